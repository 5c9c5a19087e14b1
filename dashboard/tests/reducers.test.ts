import { describe, expect, it } from 'vitest';
import type { BucketItem, DialogItem, Message } from '../src/api/types';
import { addMessages, alertsReducer, dialogReducer, dialogsReducer, mergeBuckets, withAlert, withDelivery, withOlder } from '../src/live/reducers';
import { TopicState } from '../src/live/topic';

const dialog = (id: string, last: string, text?: string): DialogItem => ({
  user: { id, name: id.toUpperCase() },
  last,
  messages: 1,
  sessions: 1,
  mode: 'auto',
  preview: text === undefined ? null : { text, direction: 'in', attachments: 0 },
});
const message = (id: string, ts: string, text = id): Message => ({ id, ts, text, direction: 'in', provider: 'telegram', attachments: [] });
const bucket = (start: string, messages_in: number): BucketItem => ({
  start,
  messages_in,
  messages_out: 0,
  users_new: 0,
  users_existing: 0,
  users_active: 0,
  sessions: 0,
});

describe('dialogs topic', () => {
  it('keeps the latest dialog on top as deltas arrive', () => {
    const t = new TopicState(dialogsReducer);
    t.apply({ topic: 'd', seq: 1, kind: 'snapshot', data: { items: [dialog('a', '2026-11-27T10:00:00Z', 'hi'), dialog('b', '2026-11-27T11:00:00Z', 'yo')] } });
    expect(t.state!.map((d) => d.user.id)).toEqual(['b', 'a']);
    t.apply({ topic: 'd', seq: 2, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T12:00:00Z', 'again') } });
    t.apply({ topic: 'd', seq: 3, kind: 'delta', data: { dialog: dialog('c', '2026-11-27T12:30:00Z', 'new') } });
    expect(t.state!.map((d) => [d.user.id, d.preview?.text])).toEqual([
      ['c', 'new'],
      ['a', 'again'],
      ['b', 'yo'],
    ]);
  });

  it('keeps a dialog’s preview when a late message carries none', () => {
    const t = new TopicState(dialogsReducer);
    t.apply({ topic: 'd', seq: 1, kind: 'snapshot', data: { items: [dialog('a', '2026-11-27T10:00:00Z', 'latest')] } });
    t.apply({ topic: 'd', seq: 2, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:00:00Z') } });
    expect(t.state![0]!.preview?.text).toBe('latest');
  });
});

describe('dialog topic', () => {
  it('shows messages oldest first, each once, however they arrive', () => {
    const t = new TopicState(dialogReducer);
    // The snapshot is newest first; a delta may repeat a message the snapshot holds.
    t.apply({
      topic: 'x',
      seq: 5,
      kind: 'snapshot',
      data: { dialog: dialog('a', '2026-11-27T10:02:00Z'), messages: [message('m2', '2026-11-27T10:02:00Z'), message('m1', '2026-11-27T10:01:00Z')], next: 'c1' },
    });
    t.apply({ topic: 'x', seq: 6, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:02:00Z'), message: message('m2', '2026-11-27T10:02:00Z') } });
    t.apply({ topic: 'x', seq: 7, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:03:00Z'), message: message('m3', '2026-11-27T10:03:00Z') } });
    expect(t.state!.messages.map((m) => m.id)).toEqual(['m1', 'm2', 'm3']);
    expect(t.state!.dialog!.last).toBe('2026-11-27T10:03:00Z');
    expect(t.state!.next).toBe('c1');
  });

  it('puts older history before what is shown', () => {
    const view = { dialog: null, messages: [message('m5', '2026-11-27T10:05:00Z')], next: 'c' };
    const older = withOlder(view, [message('m4', '2026-11-27T10:04:00Z'), message('m3', '2026-11-27T10:03:00Z'), message('m5', '2026-11-27T10:05:00Z')], null);
    expect(older.messages.map((m) => m.id)).toEqual(['m3', 'm4', 'm5']);
    expect(older.next).toBeNull();
  });

  it('returns the same list when nothing is new', () => {
    const have = [message('m1', '2026-11-27T10:00:00Z')];
    expect(addMessages(have, [message('m1', '2026-11-27T10:00:00Z')])).toBe(have);
  });
});

describe('statistics buckets', () => {
  it('replaces the shown buckets a live frame carries, and adds none', () => {
    const shown = [bucket('2026-11-26T00:00:00Z', 1), bucket('2026-11-27T00:00:00Z', 2)];
    const merged = mergeBuckets(shown, [bucket('2026-11-27T00:00:00.000Z', 5), bucket('2026-11-28T00:00:00Z', 9)]);
    expect(merged.map((b) => b.messages_in)).toEqual([1, 5]);
    expect(mergeBuckets(shown, [])).toBe(shown);
  });
});

describe('a mode switch on the dialog topic', () => {
  it('changes the dialog, not its messages', () => {
    const t = new TopicState(dialogReducer);
    t.apply({ topic: 'x', seq: 1, kind: 'snapshot', data: { dialog: dialog('a', '2026-11-27T10:00:00Z'), messages: [message('m1', '2026-11-27T10:00:00Z')], next: null } });
    t.apply({ topic: 'x', seq: 2, kind: 'delta', data: { dialog: { ...dialog('a', '2026-11-27T10:00:00Z'), mode: 'manual' } } });
    expect(t.state!.dialog!.mode).toBe('manual');
    expect(t.state!.messages.map((m) => m.id)).toEqual(['m1']);
  });
});

describe('an operator message’s delivery on the dialog topic', () => {
  const sent = (id: string, ts: string, text = id): Message => ({
    ...message(id, ts, text),
    direction: 'out',
    sender: { kind: 'operator', id: 'op' },
    delivery: { state: 'pending' },
  });
  const start = () => {
    const t = new TopicState(dialogReducer);
    t.apply({ topic: 'x', seq: 1, kind: 'snapshot', data: { dialog: { ...dialog('a', '2026-11-27T10:00:00Z'), mode: 'manual' }, messages: [message('m1', '2026-11-27T10:00:00Z')], next: null } });
    return t;
  };
  const deliveryOf = (t: TopicState<{ messages: Message[] }>, id: string) => t.state!.messages.find((m) => m.id === id)?.delivery;

  it('marks the message pending, then sent, as the frames arrive', () => {
    const t = start();
    t.apply({ topic: 'x', seq: 2, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:01:00Z'), message: sent('op1', '2026-11-27T10:01:00Z') } });
    expect(deliveryOf(t, 'op1')).toEqual({ state: 'pending' });
    t.apply({ topic: 'x', seq: 3, kind: 'delta', data: { delivery: { message: 'op1', state: 'sent' } } });
    expect(deliveryOf(t, 'op1')).toEqual({ state: 'sent' });
    // The other messages and the dialog are left as they were.
    expect(t.state!.messages.map((m) => m.id)).toEqual(['m1', 'op1']);
    expect(deliveryOf(t, 'm1')).toBeUndefined();
    expect(t.state!.dialog!.last).toBe('2026-11-27T10:01:00Z');
  });

  it('keeps the reason of a failure', () => {
    const t = start();
    t.apply({ topic: 'x', seq: 2, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:01:00Z'), message: sent('op1', '2026-11-27T10:01:00Z') } });
    t.apply({ topic: 'x', seq: 3, kind: 'delta', data: { delivery: { message: 'op1', state: 'failed', reason: 'the bot has no webhook_url' } } });
    expect(deliveryOf(t, 'op1')).toEqual({ state: 'failed', reason: 'the bot has no webhook_url' });
  });

  it('changes nothing for a message the view does not hold', () => {
    const t = start();
    const before = t.state;
    t.apply({ topic: 'x', seq: 2, kind: 'delta', data: { delivery: { message: 'elsewhere', state: 'sent' } } });
    expect(t.state).toBe(before);
    expect(withDelivery(before!, { state: 'sent' })).toBe(before);
  });

  it('does not take a sent message back to pending when its message delta comes again', () => {
    const t = start();
    const op = sent('op1', '2026-11-27T10:01:00Z');
    t.apply({ topic: 'x', seq: 2, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:01:00Z'), message: op } });
    t.apply({ topic: 'x', seq: 3, kind: 'delta', data: { delivery: { message: 'op1', state: 'sent' } } });
    t.apply({ topic: 'x', seq: 4, kind: 'delta', data: { dialog: dialog('a', '2026-11-27T10:01:00Z'), message: op } });
    expect(t.state!.messages.map((m) => m.id)).toEqual(['m1', 'op1']);
    expect(deliveryOf(t, 'op1')).toEqual({ state: 'sent' });
  });
});

describe('the alerts topic: dialogs waiting for a human', () => {
  const asking = (id: string, at: string, reason: string | null = 'operator please'): DialogItem => ({ ...dialog(id, at), handoff: { at, reason, by: 'user' } });
  const answered = (id: string, mode = 'manual'): DialogItem => ({ ...dialog(id, '2026-11-27T10:00:00Z'), mode, handoff: null });
  const start = () => {
    const t = new TopicState(alertsReducer);
    t.apply({ topic: 'a', seq: 1, kind: 'snapshot', data: { items: [asking('b', '2026-11-27T10:05:00Z'), asking('a', '2026-11-27T10:01:00Z')] } });
    return t;
  };
  const ids = (t: TopicState<DialogItem[]>) => t.state!.map((d) => d.user.id);

  it('starts from the snapshot, latest request first', () => {
    expect(ids(start())).toEqual(['b', 'a']);
    const none = new TopicState(alertsReducer);
    none.apply({ topic: 'a', seq: 1, kind: 'snapshot', data: { items: [] } });
    expect(none.state).toEqual([]);
  });

  it('puts a new request first', () => {
    const t = start();
    t.apply({ topic: 'a', seq: 2, kind: 'delta', data: { dialog: asking('c', '2026-11-27T10:09:00Z', null) } });
    expect(ids(t)).toEqual(['c', 'b', 'a']);
    expect(t.state![0]!.handoff).toEqual({ at: '2026-11-27T10:09:00Z', reason: null, by: 'user' });
  });

  it('replaces the older entry of a user who asks again', () => {
    const t = start();
    t.apply({ topic: 'a', seq: 2, kind: 'delta', data: { dialog: asking('a', '2026-11-27T10:10:00Z', 'payment question') } });
    expect(ids(t)).toEqual(['a', 'b']);
    expect(t.state![0]!.handoff?.reason).toBe('payment question');
  });

  it('removes a dialog once it is answered (its mode switched)', () => {
    const t = start();
    t.apply({ topic: 'a', seq: 2, kind: 'delta', data: { dialog: answered('b') } });
    expect(ids(t)).toEqual(['a']);
    t.apply({ topic: 'a', seq: 3, kind: 'delta', data: { dialog: answered('a', 'auto') } });
    expect(t.state).toEqual([]);
  });

  it('changes nothing for a dialog switched while it was not waiting', () => {
    const have = start().state!;
    expect(withAlert(have, answered('z'))).toBe(have);
  });

  it('keeps the order when a delta repeats a request the list holds', () => {
    const have = start().state!;
    expect(withAlert(have, asking('a', '2026-11-27T10:01:00Z')).map((d) => d.user.id)).toEqual(['b', 'a']);
  });
});
