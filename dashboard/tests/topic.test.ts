import { describe, expect, it } from 'vitest';
import { type Frame, type Reducer, TopicState } from '../src/live/topic';

// A list that records every delta in the order applied.
const list: Reducer<number[]> = {
  snapshot: (data) => [...(data as number[])],
  delta: (state, data) => [...state, data as number],
};
const snap = (seq: number, data: number[]): Frame => ({ topic: 't', seq, kind: 'snapshot', data });
const delta = (seq: number, data: number): Frame => ({ topic: 't', seq, kind: 'delta', data });

describe('TopicState', () => {
  it('applies a snapshot and then deltas in seq order', () => {
    const t = new TopicState(list);
    expect(t.apply(snap(4, [1, 2]))).toBe('applied');
    expect(t.apply(delta(5, 3))).toBe('applied');
    expect(t.apply(delta(6, 4))).toBe('applied');
    expect(t.state).toEqual([1, 2, 3, 4]);
    expect(t.seq).toBe(6);
  });

  it('never applies a delta before its snapshot', () => {
    const t = new TopicState(list);
    expect(t.apply(delta(1, 9))).toBe('gap');
    expect(t.state).toBeNull();
    expect(t.seq).toBeNull();
  });

  it('reports a gap and applies nothing past it', () => {
    const t = new TopicState(list);
    t.apply(snap(10, []));
    t.apply(delta(11, 1));
    expect(t.apply(delta(13, 3))).toBe('gap');
    expect(t.apply(delta(14, 4))).toBe('gap');
    expect(t.state).toEqual([1]);
    expect(t.seq).toBe(11);
    // The missed deltas, sent again after a resubscribe with since = 11, close it.
    expect(t.apply(delta(12, 2))).toBe('applied');
    expect(t.apply(delta(13, 3))).toBe('applied');
    expect(t.state).toEqual([1, 2, 3]);
  });

  it('ignores a delta it already has (sent again after a resume)', () => {
    const t = new TopicState(list);
    t.apply(snap(1, []));
    t.apply(delta(2, 2));
    expect(t.apply(delta(2, 2))).toBe('stale');
    expect(t.apply(delta(1, 1))).toBe('stale');
    expect(t.state).toEqual([2]);
  });

  it('follows a topic whose snapshot is empty (a bot without figures yet)', () => {
    const t = new TopicState<number[] | null>({
      snapshot: (data) => data as number[] | null,
      delta: (_state, data) => [data as number],
    });
    expect(t.apply({ topic: 't', seq: 7, kind: 'snapshot', data: null })).toBe('applied');
    expect(t.state).toBeNull();
    expect(t.apply({ topic: 't', seq: 8, kind: 'delta', data: 1 })).toBe('applied');
    expect(t.state).toEqual([1]);
  });

  it('counts its snapshots (pages start over what they built beside it)', () => {
    const t = new TopicState(list);
    t.apply(snap(1, []));
    t.apply(delta(2, 1));
    expect(t.snapshots).toBe(1);
    t.apply(snap(9, []));
    expect(t.snapshots).toBe(2);
  });

  it('starts over from a fresh snapshot, whatever its seq', () => {
    const t = new TopicState(list);
    t.apply(snap(1, [1]));
    t.apply(delta(2, 2));
    expect(t.apply(snap(40, [7]))).toBe('applied');
    expect(t.state).toEqual([7]);
    expect(t.apply(delta(41, 8))).toBe('applied');
    expect(t.state).toEqual([7, 8]);
  });
});
