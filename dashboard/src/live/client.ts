// The one WebSocket of a dashboard tab: subscriptions shared by every component that
// asks for a topic, resumed with `since` after a reconnect, a gap answered by a
// resubscribe, and the connection's state for the header to show.

import { signal } from '@preact/signals';
import type { DataLossItem } from '../api/types';
import { dataLossIn } from './dataLoss';
import { type Frame, type Reducer, TopicState } from './topic';

export type ConnectionState = 'connecting' | 'live' | 'reconnecting' | 'offline';

/** What the client needs of a WebSocket (the browser's, or a test's stand-in). */
export interface Socket {
  readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** Gets the topic's state after each change, and how many snapshots it has had. */
type Listener<S> = (state: S, snapshots: number) => void;

interface Subscription<S> {
  topic: TopicState<S>;
  listeners: Set<Listener<S>>;
  /** A resubscribe for a gap is on its way: later frames of the gap need no other. */
  resyncing: boolean;
}

export interface LiveOptions {
  connect: () => Socket;
  /** The session ended (close 1008): the app shows the login page. */
  onSessionEnded?: () => void;
  /** A topic was refused (e.g. `forbidden`). */
  onTopicError?: (topic: string, error: string) => void;
  setTimer?: (f: () => void, ms: number) => unknown;
  random?: () => number;
}

const OPEN = 1;
const MAX_BACKOFF_MS = 10_000;
const RETRY_TOPIC_MS = 2_000;

export class LiveClient {
  readonly state = signal<ConnectionState>('connecting');
  /** The loss of data the server shows (the storage's, not one bot's), as the latest
   *  snapshot or whole frame applied says; null when none. */
  readonly dataLoss = signal<DataLossItem | null>(null);
  private socket: Socket | null = null;
  private readonly subs = new Map<string, Subscription<unknown>>();
  private attempts = 0;
  private stopped = false;
  /** Grows at each start and stop: a reconnect timer of an earlier run does nothing. */
  private run = 0;

  constructor(private readonly options: LiveOptions) {}

  start(): void {
    this.stopped = false;
    this.run += 1;
    this.attempts = 0;
    this.open();
  }

  stop(): void {
    this.stopped = true;
    this.run += 1;
    this.socket?.close(1000, 'bye');
    this.socket = null;
    this.state.value = 'offline';
    this.dataLoss.value = null;
  }

  /** Follows a topic; the listener gets the state after each change (at once when
   *  the topic is already followed). Returns the function that stops following. */
  subscribe<S>(name: string, reducer: Reducer<S>, listener: Listener<S>): () => void {
    let sub = this.subs.get(name) as Subscription<S> | undefined;
    if (!sub) {
      sub = { topic: new TopicState(reducer), listeners: new Set(), resyncing: false };
      this.subs.set(name, sub as Subscription<unknown>);
      this.send({ op: 'subscribe', topic: name });
    } else if (sub.topic.seq !== null) {
      listener(sub.topic.state as S, sub.topic.snapshots);
    }
    sub.listeners.add(listener);
    return () => {
      const s = this.subs.get(name);
      if (!s) return;
      s.listeners.delete(listener as Listener<unknown>);
      if (s.listeners.size === 0) {
        this.subs.delete(name);
        this.send({ op: 'unsubscribe', topic: name });
      }
    };
  }

  private open(): void {
    this.state.value = this.attempts === 0 ? 'connecting' : 'reconnecting';
    const socket = this.options.connect();
    this.socket = socket;
    socket.onopen = () => {
      this.attempts = 0;
      this.state.value = 'live';
      // Resume every topic where it stood: the server sends what was missed.
      for (const [name, sub] of this.subs) this.resubscribe(name, sub);
    };
    socket.onmessage = (ev) => {
      if (typeof ev.data === 'string') this.onFrame(ev.data);
    };
    socket.onerror = () => {};
    socket.onclose = (ev) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (ev.code === 1008) {
        this.state.value = 'offline';
        this.options.onSessionEnded?.();
        return;
      }
      this.state.value = 'reconnecting';
      const backoff = Math.min(MAX_BACKOFF_MS, 500 * 2 ** this.attempts);
      this.attempts += 1;
      const jitter = 0.5 + (this.options.random ?? Math.random)() / 2;
      const run = this.run;
      this.later(() => {
        if (!this.stopped && run === this.run) this.open();
      }, backoff * jitter);
    };
  }

  private onFrame(text: string): void {
    let frame: Frame;
    try {
      frame = JSON.parse(text) as Frame;
    } catch {
      return;
    }
    const sub = this.subs.get(frame.topic);
    if (frame.kind === 'error') {
      const error = (frame.data as { error?: string } | null)?.error ?? 'error';
      this.options.onTopicError?.(frame.topic, error);
      // A refusal stands; anything else (storage unavailable for a moment) is asked
      // again a little later, from where the topic stood.
      if (sub && error !== 'forbidden' && error !== 'unknown_topic') {
        const run = this.run;
        this.later(() => {
          if (run === this.run && this.subs.get(frame.topic) === sub) this.resubscribe(frame.topic, sub);
        }, RETRY_TOPIC_MS);
      }
      return;
    }
    if (!sub) return;
    switch (sub.topic.apply(frame)) {
      case 'applied': {
        sub.resyncing = false;
        const loss = dataLossIn(frame);
        if (loss !== undefined && JSON.stringify(loss) !== JSON.stringify(this.dataLoss.value)) this.dataLoss.value = loss;
        for (const l of sub.listeners) l(sub.topic.state, sub.topic.snapshots);
        break;
      }
      case 'gap':
        if (!sub.resyncing) this.resubscribe(frame.topic, sub);
        break;
      case 'stale':
        break;
    }
  }

  /** Runs `f` after `ms` (the test's timer when it gives one). */
  private later(f: () => void, ms: number): void {
    (this.options.setTimer ?? setTimeout)(f, ms);
  }

  /** Subscribes again from where the topic stands (`since`), or afresh. */
  private resubscribe(name: string, sub: Subscription<unknown>): void {
    const since = sub.topic.seq;
    sub.resyncing = true;
    this.send(since === null ? { op: 'subscribe', topic: name } : { op: 'subscribe', topic: name, since });
  }

  private send(message: object): void {
    if (this.socket && this.socket.readyState === OPEN) this.socket.send(JSON.stringify(message));
  }
}
