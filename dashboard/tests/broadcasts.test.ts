import { describe, expect, it } from 'vitest';
import type { BroadcastItem } from '../src/api/types';
import { NO_BROADCAST_FILTERS, broadcastBody, describeFilter, progressOf, recipientsUrl } from '../src/audience';
import { broadcastsReducer, upsertBroadcast } from '../src/live/reducers';
import { TopicState } from '../src/live/topic';

const item = (id: string, created: string, over: Partial<BroadcastItem> = {}): BroadcastItem => ({
  id,
  state: 'queued',
  total: 10,
  sent: 0,
  failed: 0,
  skipped: 0,
  created,
  to: 'all',
  filter: null,
  by: 'user:anna',
  text: `text ${id}`,
  attachments: [],
  ...over,
});

describe('broadcasts topic', () => {
  it('shows the snapshot latest first', () => {
    const t = new TopicState(broadcastsReducer);
    t.apply({ topic: 'b', seq: 1, kind: 'snapshot', data: { items: [item('a', '2026-11-27T10:00:00Z'), item('c', '2026-11-27T12:00:00Z'), item('b', '2026-11-27T11:00:00Z')] } });
    expect(t.state!.map((b) => b.id)).toEqual(['c', 'b', 'a']);
  });

  it('puts a delta in place of the item with the same id, and a new one first', () => {
    const t = new TopicState(broadcastsReducer);
    t.apply({ topic: 'b', seq: 1, kind: 'snapshot', data: { items: [item('b', '2026-11-27T11:00:00Z'), item('a', '2026-11-27T10:00:00Z')] } });
    t.apply({ topic: 'b', seq: 2, kind: 'delta', data: { broadcast: item('a', '2026-11-27T10:00:00Z', { state: 'running', sent: 4, failed: 1 }) } });
    expect(t.state!.map((b) => [b.id, b.state, b.sent, b.failed])).toEqual([
      ['b', 'queued', 0, 0],
      ['a', 'running', 4, 1],
    ]);
    t.apply({ topic: 'b', seq: 3, kind: 'delta', data: { broadcast: item('c', '2026-11-27T12:00:00Z') } });
    t.apply({ topic: 'b', seq: 4, kind: 'delta', data: { broadcast: item('a', '2026-11-27T10:00:00Z', { state: 'done', sent: 8, failed: 1, skipped: 1 }) } });
    expect(t.state!.map((b) => [b.id, b.state])).toEqual([
      ['c', 'queued'],
      ['b', 'queued'],
      ['a', 'done'],
    ]);
    expect(t.state!.length).toBe(3);
  });

  it('orders broadcasts of the same moment by id (time-ordered), latest first', () => {
    const at = '2026-11-27T10:00:00Z';
    expect(upsertBroadcast([item('01a', at)], item('01b', at)).map((b) => b.id)).toEqual(['01b', '01a']);
  });

  it('keeps the list when a delta comes before the snapshot is read again (gap)', () => {
    const t = new TopicState(broadcastsReducer);
    expect(t.apply({ topic: 'b', seq: 5, kind: 'delta', data: { broadcast: item('a', '2026-11-27T10:00:00Z') } })).toBe('gap');
    expect(t.state).toBeNull();
  });
});

describe('a broadcast’s progress', () => {
  it('counts sent, failed and skipped against the total', () => {
    expect(progressOf({ total: 10, sent: 5, failed: 2, skipped: 1 })).toEqual({ handled: 8, percent: 80 });
    expect(progressOf({ total: 0, sent: 0, failed: 0, skipped: 0 })).toEqual({ handled: 0, percent: 100 });
    expect(progressOf({ total: 3, sent: 1, failed: 0, skipped: 0 })).toEqual({ handled: 1, percent: 33 });
  });
});

describe('the broadcast composer', () => {
  it('counts recipients with one row: subscribers only, or all', () => {
    expect(recipientsUrl('shop', 'subscribers', NO_BROADCAST_FILTERS)).toBe('/api/v1/bots/shop/users?subscriber=true&limit=1');
    expect(recipientsUrl('shop', 'all', { provider: ['telegram'], tag: ['VIP', 'lead'], role: [] })).toBe('/api/v1/bots/shop/users?provider=telegram&tag=VIP&tag=lead&limit=1');
  });

  it('sends the filter only when one is chosen, the text only when written', () => {
    expect(broadcastBody('all', NO_BROADCAST_FILTERS, 'Hello\nall', null)).toEqual({ to: 'all', text: 'Hello\nall' });
    expect(broadcastBody('subscribers', { provider: [], tag: ['VIP'], role: ['staff'] }, '  ', { title: 'Sale' })).toEqual({
      to: 'subscribers',
      filter: { tag: ['VIP'], role: ['staff'] },
      card: { title: 'Sale' },
    });
  });

  it('says a stored filter in words', () => {
    expect(describeFilter(null)).toBe('');
    expect(describeFilter({ tag: ['VIP', 'lead'], provider: 'telegram', role: [] })).toBe('tag: VIP, lead · provider: telegram');
    expect(describeFilter({})).toBe('');
  });
});
