// One topic's state on the client: a snapshot, then deltas applied strictly in `seq`
// order. A delta that does not follow the last one applied is never applied: the
// caller resubscribes with `since` and the server sends what was missed (or a fresh
// snapshot), so what is shown never has a silent gap.

export interface Frame {
  topic: string;
  seq: number;
  kind: 'snapshot' | 'delta' | 'error';
  data: unknown;
}

/** How a topic's data is built: from a snapshot, then one delta at a time. */
export interface Reducer<S> {
  snapshot(data: unknown): S;
  delta(state: S, data: unknown): S;
}

/** What became of a frame. */
export type Outcome =
  | 'applied'
  /** Already applied (a delta sent again after a resume). */
  | 'stale'
  /** Deltas are missing before this one: resubscribe with `since` = `seq`. */
  | 'gap';

export class TopicState<S> {
  /** The seq of the last frame applied; null before the first snapshot. */
  seq: number | null = null;
  /** Null before the first snapshot (and whatever the reducer made of a snapshot's
   *  data, which may be null too: a bot without figures yet). */
  state: S | null = null;
  /** Snapshots applied so far: a page that keeps data beside the topic's (older pages
   *  it read) starts that over when a fresh snapshot replaced what it built on. */
  snapshots = 0;

  constructor(private readonly reducer: Reducer<S>) {}

  apply(frame: Frame): Outcome {
    if (frame.kind === 'snapshot') {
      this.state = this.reducer.snapshot(frame.data);
      this.seq = frame.seq;
      this.snapshots += 1;
      return 'applied';
    }
    if (this.seq === null) return 'gap';
    if (frame.seq <= this.seq) return 'stale';
    if (frame.seq !== this.seq + 1) return 'gap';
    this.state = this.reducer.delta(this.state as S, frame.data);
    this.seq = frame.seq;
    return 'applied';
  }
}

/** A reducer for topics whose every frame is the whole state (overview, statistics). */
export function whole<S>(): Reducer<S> {
  return {
    snapshot: (data) => data as S,
    delta: (_state, data) => data as S,
  };
}
