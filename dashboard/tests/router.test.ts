import { describe, expect, it } from 'vitest';
import { href, parse, type Route } from '../src/router';

describe('router', () => {
  it('reads every page from its address and writes it back', () => {
    const routes: Route[] = [
      { page: 'login' },
      { page: 'bots' },
      { page: 'overview', bot: 'shop' },
      { page: 'board', bot: 'shop' },
      { page: 'dialogs', bot: 'shop', user: null, mode: 'all' },
      { page: 'dialogs', bot: 'shop', user: 'tg/55 32?x', mode: 'manual' },
      { page: 'dialogs', bot: 'shop', user: null, mode: 'auto' },
      { page: 'audience', bot: 'shop' },
      { page: 'broadcasts', bot: 'shop' },
      { page: 'settings', bot: 'shop' },
      { page: 'statistics', bot: 'shop', param: 'dashboard' },
      { page: 'statistics', bot: 'shop', param: 'sessions' },
    ];
    for (const r of routes) {
      const [path, search] = href(r).split('?');
      expect(parse(path!, search ? '?' + search : '')).toEqual(r);
    }
  });
  it('reads the dialogs filter from the query, and ignores nonsense there', () => {
    expect(parse('/bots/shop/dialogs', '?mode=manual')).toMatchObject({ mode: 'manual' });
    expect(parse('/bots/shop/dialogs', '?mode=<b>')).toMatchObject({ mode: 'all' });
  });
  it('finds no page at unknown addresses', () => {
    expect(parse('/bots/shop/nope')).toEqual({ page: 'missing' });
    expect(parse('/bots/shop/statistics/nope')).toEqual({ page: 'missing' });
    expect(parse('/bots/shop/audience/nope')).toEqual({ page: 'missing' });
    expect(parse('/bots/shop/settings/nope')).toEqual({ page: 'missing' });
    expect(parse('/elsewhere')).toEqual({ page: 'missing' });
  });
});
