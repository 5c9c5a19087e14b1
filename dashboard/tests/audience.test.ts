import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ProfileAnswer, UserItem } from '../src/api/types';
import {
  type AudienceFilters,
  NO_FILTERS,
  bulkBody,
  csvUrl,
  filterBody,
  formOf,
  formProblem,
  isFiltered,
  newTags,
  patchOf,
  throttle,
  toggleValue,
  usersUrl,
} from '../src/audience';
import { EMPTY_CARD, cardOf } from '../src/card';

const user = (over: Partial<UserItem> = {}): UserItem => ({
  id: 'u1',
  name: 'Олена Коваль',
  provider: 'telegram',
  gender: null,
  role: null,
  tags: [],
  subscriber: true,
  mode: 'auto',
  fields: {},
  messages: 3,
  sessions: 1,
  ...over,
});

const query = (url: string) => {
  const [path, q] = url.split('?');
  return { path, params: [...new URLSearchParams(q ?? '')] };
};

describe('the users table’s query', () => {
  it('asks for everything without filters', () => {
    expect(usersUrl('shop', NO_FILTERS)).toBe('/api/v1/bots/shop/users');
    expect(isFiltered(NO_FILTERS)).toBe(false);
  });

  it('repeats the values of a group (OR) and joins the groups (AND)', () => {
    let f: AudienceFilters = toggleValue(NO_FILTERS, 'tag', 'VIP');
    f = toggleValue(f, 'tag', 'new lead');
    f = toggleValue(f, 'provider', 'telegram');
    f = toggleValue(f, 'mode', 'manual');
    f = { ...f, subscriber: true, search: '  олена ' };
    expect(isFiltered(f)).toBe(true);
    const { path, params } = query(usersUrl('my bot', f, { sort: 'name', order: 'asc', limit: 50, cursor: 'name.asc.t00.75' }));
    expect(path).toBe('/api/v1/bots/my%20bot/users');
    expect(params).toEqual([
      ['search', 'олена'],
      ['provider', 'telegram'],
      ['tag', 'VIP'],
      ['tag', 'new lead'],
      ['subscriber', 'true'],
      ['mode', 'manual'],
      ['sort', 'name'],
      ['order', 'asc'],
      ['limit', '50'],
      ['cursor', 'name.asc.t00.75'],
    ]);
  });

  it('takes a value out when it is toggled again', () => {
    const f = toggleValue(toggleValue(toggleValue(NO_FILTERS, 'role', 'a'), 'role', 'b'), 'role', 'a');
    expect(f.role).toEqual(['b']);
    expect(NO_FILTERS.role).toEqual([]);
  });

  it('exports what the table shows, without paging', () => {
    const f = { ...toggleValue(NO_FILTERS, 'provider', 'webchat'), search: 'a&b' };
    expect(csvUrl('shop', f)).toBe('/api/v1/bots/shop/users.csv?search=a%26b&provider=webchat');
    expect(csvUrl('shop', NO_FILTERS)).toBe('/api/v1/bots/shop/users.csv');
  });

  it('writes the filter of a bulk edit with only the groups chosen', () => {
    expect(filterBody(NO_FILTERS)).toEqual({});
    const f: AudienceFilters = { search: ' ann ', provider: ['telegram'], tag: [], role: ['VIP', 'staff'], subscriber: true, mode: ['auto'] };
    expect(filterBody(f)).toEqual({ search: 'ann', provider: ['telegram'], role: ['VIP', 'staff'], subscriber: true, mode: ['auto'] });
  });
});

describe('the edit form', () => {
  it('changes nothing when nothing was touched', () => {
    const p = user({ role: 'VIP', tags: ['a', 'b'], fields: { phone: '+380', email: 'o@x.ua', city: 'Lviv' } });
    expect(patchOf(p, formOf(p))).toEqual({});
    // Tags in another order are the same tags.
    expect(patchOf(p, { ...formOf(p), tags: ['b', 'a'] })).toEqual({});
  });

  it('reads Auto mode from a profile, and from a row of the table', () => {
    const profile: ProfileAnswer = { ...user({ mode: 'manual' }), auto_mode: false };
    expect(formOf(profile).autoMode).toBe(false);
    expect(formOf(user({ mode: 'manual' })).autoMode).toBe(false);
    expect(formOf(user()).autoMode).toBe(true);
  });

  it('sends only what changed, in one patch', () => {
    const p = user({ role: 'VIP', tags: ['a'], subscriber: true, gender: 'female', fields: { phone: '+380', city: 'Lviv' } });
    const form = formOf(p);
    const edited = {
      ...form,
      role: 'staff',
      tags: ['a', 'b'],
      subscriber: false,
      autoMode: false,
      phone: '',
      email: ' o@x.ua ',
      custom: [...form.custom.filter((c) => c.name !== 'city'), { key: 9, name: 'order', value: '#12' }],
    };
    expect(patchOf(p, edited)).toEqual({
      role: 'staff',
      tags: ['a', 'b'],
      subscriber: false,
      auto_mode: false,
      fields: { phone: null, email: 'o@x.ua', city: null, order: '#12' },
    });
  });

  it('sends an emptied name, gender or role as such: the channel’s again, no role', () => {
    const p = user({ role: 'VIP', gender: 'female' });
    expect(patchOf(p, { ...formOf(p), name: '  ', gender: '', role: '' })).toEqual({ name: '', gender: '', role: null });
    expect(patchOf(p, { ...formOf(p), name: ' Олена ' })).toEqual({ name: 'Олена' });
  });

  it('changes a custom field’s value, and a renamed field moves', () => {
    const p = user({ fields: { city: 'Lviv' } });
    const form = formOf(p);
    const city = form.custom[0]!;
    expect(patchOf(p, { ...form, custom: [{ ...city, value: 'Kyiv' }] })).toEqual({ fields: { city: 'Kyiv' } });
    expect(patchOf(p, { ...form, custom: [{ ...city, name: 'town' }] })).toEqual({ fields: { town: 'Lviv', city: null } });
  });

  it('finds what cannot be saved', () => {
    const form = formOf(user());
    expect(formProblem(form)).toBeNull();
    expect(formProblem({ ...form, custom: [{ key: 1, name: '', value: '' }] })).toBeNull();
    expect(formProblem({ ...form, custom: [{ key: 1, name: '', value: 'x' }] })).toMatch(/needs a name/);
    expect(formProblem({ ...form, custom: [{ key: 1, name: 'phone', value: 'x' }] })).toMatch(/own place/);
    expect(formProblem({ ...form, custom: [{ key: 1, name: 'a', value: '1' }, { key: 2, name: 'a', value: '2' }] })).toMatch(/Two fields/);
  });

  it('knows which tags are new to the bot', () => {
    expect(newTags({ ...formOf(user()), tags: ['VIP', 'fresh'] }, ['VIP', 'other'])).toEqual(['fresh']);
  });
});

describe('bulk edits', () => {
  it('names the users ticked, or the filter for all matching', () => {
    expect(bulkBody({ ids: ['a', 'b'] }, { kind: 'role', role: 'VIP' })).toEqual({ ids: ['a', 'b'], set: { role: 'VIP' } });
    expect(bulkBody({ ids: ['a'] }, { kind: 'role', role: '' })).toEqual({ ids: ['a'], set: { role: null } });
    const filter = { ...NO_FILTERS, tag: ['lead'], subscriber: true };
    expect(bulkBody({ filter }, { kind: 'subscriber', on: false })).toEqual({ filter: { tag: ['lead'], subscriber: true }, set: { subscriber: false } });
    expect(bulkBody({ filter: NO_FILTERS }, { kind: 'auto_mode', on: true })).toEqual({ filter: {}, set: { auto_mode: true } });
    expect(bulkBody({ ids: ['a'] }, { kind: 'add_tag', tag: 'x' })).toEqual({ ids: ['a'], add_tags: ['x'] });
    expect(bulkBody({ ids: ['a'] }, { kind: 'remove_tag', tag: 'x' })).toEqual({ ids: ['a'], remove_tags: ['x'] });
  });
});

describe('a card from its draft', () => {
  it('trims and leaves out what is empty', () => {
    expect(cardOf({ ...EMPTY_CARD, title: ' Sale ' })).toEqual({ title: 'Sale' });
    expect(
      cardOf({
        title: 'Sale',
        subtitle: ' today ',
        image: 'https://x.test/a.png',
        rows: [
          { key: 0, title: 'Buy', kind: 'payload', value: 'buy:1' },
          { key: 1, title: 'Open', kind: 'url', value: ' https://x.test ' },
          { key: 2, title: 'Hi', kind: 'payload', value: '' },
        ],
      }),
    ).toEqual({ title: 'Sale', subtitle: 'today', image: 'https://x.test/a.png', buttons: [{ title: 'Buy', payload: 'buy:1' }, { title: 'Open', url: 'https://x.test' }, { title: 'Hi' }] });
  });
});

describe('throttle', () => {
  afterEach(() => vi.useRealTimers());

  it('runs at once, then at most once per interval, with the last call kept', () => {
    vi.useFakeTimers();
    const f = vi.fn();
    const t = throttle(f, 1000);
    t.call();
    expect(f).toHaveBeenCalledTimes(1);
    t.call();
    t.call();
    t.call();
    expect(f).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(999);
    expect(f).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(f).toHaveBeenCalledTimes(2);
    vi.advanceTimersByTime(5000);
    expect(f).toHaveBeenCalledTimes(2);
    t.call();
    expect(f).toHaveBeenCalledTimes(3);
  });

  it('calls nothing after it is cancelled', () => {
    vi.useFakeTimers();
    const f = vi.fn();
    const t = throttle(f, 1000);
    t.call();
    t.call();
    t.cancel();
    vi.advanceTimersByTime(2000);
    expect(f).toHaveBeenCalledTimes(1);
  });
});
