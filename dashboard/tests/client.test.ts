import { beforeEach, describe, expect, it } from 'vitest';
import { LiveClient, type Socket } from '../src/live/client';
import { dataLossText } from '../src/live/dataLoss';
import type { Reducer } from '../src/live/topic';

/** A socket the test drives: what the client sent, and frames pushed to it. */
class FakeSocket implements Socket {
  readyState = 0;
  sent: Array<Record<string, unknown>> = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  send(data: string) {
    this.sent.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(code = 1000, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  frame(topic: string, seq: number, kind: string, data: unknown) {
    this.onmessage?.({ data: JSON.stringify({ topic, seq, kind, data }) });
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code, reason: '' });
  }
}

const list: Reducer<number[]> = {
  snapshot: (data) => [...(data as number[])],
  delta: (state, data) => [...state, data as number],
};

describe('LiveClient', () => {
  let sockets: FakeSocket[];
  let timers: Array<() => void>;
  let client: LiveClient;
  const last = () => sockets[sockets.length - 1]!;
  /** Opens a fake socket the test drives (the latest is `last()`). */
  const connect = () => {
    const s = new FakeSocket();
    sockets.push(s);
    return s;
  };

  beforeEach(() => {
    sockets = [];
    timers = [];
    client = new LiveClient({
      connect,
      setTimer: (f) => timers.push(f),
      random: () => 0.5,
    });
  });

  it('subscribes when open and hands each change to the page', () => {
    const seen: number[][] = [];
    client.start();
    expect(client.state.value).toBe('connecting');
    client.subscribe('bot/a/overview', list, (s) => seen.push(s));
    last().open();
    expect(client.state.value).toBe('live');
    expect(last().sent).toEqual([{ op: 'subscribe', topic: 'bot/a/overview' }]);
    last().frame('bot/a/overview', 3, 'snapshot', [1]);
    last().frame('bot/a/overview', 4, 'delta', 2);
    expect(seen).toEqual([[1], [1, 2]]);
  });

  it('shows the loss of data the storage suffered, from the snapshots until one says null', () => {
    const whole: Reducer<unknown> = { snapshot: (d) => d, delta: (_s, d) => d };
    const loss = { reason: "the storage's epoch is gone", at: '2026-11-27T10:00:00.000Z' };
    client.start();
    last().open();
    client.subscribe('bot/a/overview', whole, () => {});
    client.subscribe('bot/a/alerts', whole, () => {});
    last().frame('bot/a/alerts', 1, 'snapshot', { items: [], data_loss: null });
    expect(client.dataLoss.value).toBeNull();
    // The server resyncs every subscription when it finds a loss.
    last().frame('bot/a/alerts', 1, 'snapshot', { items: [], data_loss: loss });
    expect(client.dataLoss.value).toEqual(loss);
    expect(dataLossText(client.dataLoss.value!)).toBe(
      "Storage lost data: the storage's epoch is gone. Figures may miss events; an operator runs botwatch data-loss clear.",
    );
    // A delta that does not say (a dialog moved) leaves it; a stale frame too.
    last().frame('bot/a/alerts', 2, 'delta', { dialog: {} });
    last().frame('bot/a/alerts', 1, 'delta', { data_loss: null });
    expect(client.dataLoss.value).toEqual(loss);
    // Overview frames are whole and say it each time.
    last().frame('bot/a/overview', 5, 'snapshot', { users: [], top: [], days: [], data_loss: loss });
    expect(client.dataLoss.value).toEqual(loss);
    // Cleared by an operator: the next resync's snapshots say null.
    last().frame('bot/a/overview', 6, 'snapshot', { users: [], top: [], days: [], data_loss: null });
    expect(client.dataLoss.value).toBeNull();
    // An error frame says nothing of it.
    last().frame('bot/a/overview', 0, 'error', { error: 'storage_unavailable' });
    expect(client.dataLoss.value).toBeNull();
    // Signed out: forgotten.
    last().frame('bot/a/alerts', 3, 'snapshot', { items: [], data_loss: loss });
    expect(client.dataLoss.value).toEqual(loss);
    client.stop();
    expect(client.dataLoss.value).toBeNull();
  });

  it('asks once for what a gap missed, and shows nothing out of order meanwhile', () => {
    const seen: number[][] = [];
    client.start();
    last().open();
    client.subscribe('t', list, (s) => seen.push(s));
    last().frame('t', 1, 'snapshot', []);
    last().frame('t', 2, 'delta', 2);
    last().frame('t', 4, 'delta', 4);
    last().frame('t', 5, 'delta', 5);
    // One resubscribe from where the topic stands, not one per frame of the gap.
    expect(last().sent.slice(1)).toEqual([{ op: 'subscribe', topic: 't', since: 2 }]);
    expect(seen).toEqual([[], [2]]);
    // The server answers with the missed deltas; the ones already seen are skipped.
    last().frame('t', 3, 'delta', 3);
    last().frame('t', 4, 'delta', 4);
    last().frame('t', 5, 'delta', 5);
    expect(seen[seen.length - 1]).toEqual([2, 3, 4, 5]);
  });

  it('resumes every topic where it stood after a reconnect', () => {
    const seen: number[][] = [];
    client.start();
    last().open();
    client.subscribe('t', list, (s) => seen.push(s));
    client.subscribe('u', list, () => {});
    last().frame('t', 7, 'snapshot', [7]);
    last().frame('t', 8, 'delta', 8);
    last().drop();
    expect(client.state.value).toBe('reconnecting');
    expect(timers).toHaveLength(1);
    timers[0]!();
    expect(sockets).toHaveLength(2);
    last().open();
    expect(client.state.value).toBe('live');
    expect(last().sent).toEqual([
      { op: 'subscribe', topic: 't', since: 8 },
      { op: 'subscribe', topic: 'u' },
    ]);
    // Missed deltas arrive; a delta sent twice is not applied twice.
    last().frame('t', 8, 'delta', 8);
    last().frame('t', 9, 'delta', 9);
    expect(seen[seen.length - 1]).toEqual([7, 8, 9]);
  });

  it('waits longer after each failed attempt, up to a bound', () => {
    const delays: number[] = [];
    const c = new LiveClient({
      connect,
      setTimer: (f, ms) => {
        delays.push(ms);
        timers.push(f);
      },
      random: () => 1,
    });
    c.start();
    for (let i = 0; i < 8; i++) {
      last().drop();
      timers[timers.length - 1]!();
    }
    expect(delays.slice(0, 4)).toEqual([500, 1000, 2000, 4000]);
    expect(Math.max(...delays)).toBe(10_000);
  });

  it('stops and reports when the session ended (1008)', () => {
    let ended = 0;
    const c = new LiveClient({
      connect,
      setTimer: (f) => timers.push(f),
      onSessionEnded: () => ended++,
    });
    c.start();
    last().open();
    last().drop(1008);
    expect(ended).toBe(1);
    expect(c.state.value).toBe('offline');
    expect(timers).toHaveLength(0);
  });

  it('shares a topic between pages and leaves it when the last one goes', () => {
    client.start();
    last().open();
    const a: number[][] = [];
    const b: number[][] = [];
    const stopA = client.subscribe('t', list, (s) => a.push(s));
    last().frame('t', 1, 'snapshot', [1]);
    const stopB = client.subscribe('t', list, (s) => b.push(s));
    // The second page gets the current state at once, without a second subscribe.
    expect(b).toEqual([[1]]);
    expect(last().sent).toEqual([{ op: 'subscribe', topic: 't' }]);
    stopA();
    expect(last().sent).toHaveLength(1);
    stopB();
    expect(last().sent[1]).toEqual({ op: 'unsubscribe', topic: 't' });
  });

  it('a reconnect timer from before a stop opens nothing after a new start', () => {
    client.start();
    last().open();
    last().drop();
    expect(timers).toHaveLength(1);
    client.stop();
    client.start();
    expect(sockets).toHaveLength(2);
    timers[0]!();
    expect(sockets).toHaveLength(2);
  });

  it('asks again for a topic the server could not serve for a moment, not for a refused one', () => {
    const c = new LiveClient({
      connect,
      setTimer: (f) => timers.push(f),
    });
    c.start();
    last().open();
    c.subscribe('bot/a/dialogs', list, () => {});
    c.subscribe('bot/b/dialogs', list, () => {});
    last().frame('bot/a/dialogs', 0, 'error', { error: 'storage_unavailable' });
    last().frame('bot/b/dialogs', 0, 'error', { error: 'forbidden' });
    expect(timers).toHaveLength(1);
    timers[0]!();
    expect(last().sent.slice(2)).toEqual([{ op: 'subscribe', topic: 'bot/a/dialogs' }]);
  });

  it('tells the page when a topic is refused', () => {
    const refused: string[] = [];
    const c = new LiveClient({
      connect,
      onTopicError: (topic, error) => refused.push(`${topic}: ${error}`),
    });
    c.start();
    last().open();
    c.subscribe('bot/x/overview', list, () => {});
    last().frame('bot/x/overview', 0, 'error', { error: 'forbidden' });
    expect(refused).toEqual(['bot/x/overview: forbidden']);
  });
});
