// How each topic's frames build what a page shows (pure: unit-tested in tests/).

import type {
  AlertsSnapshot,
  BroadcastDelta,
  BroadcastItem,
  BroadcastsSnapshot,
  BucketItem,
  Delivery,
  DeliveryDelta,
  DialogDelta,
  DialogItem,
  DialogSnapshot,
  DialogsSnapshot,
  Message,
  MessageDelta,
} from '../api/types';
import type { Reducer } from './topic';

/** Latest first; ties by user id so the order is stable. */
function byLast(a: DialogItem, b: DialogItem): number {
  const la = a.last ?? '';
  const lb = b.last ?? '';
  return la === lb ? a.user.id.localeCompare(b.user.id) : la < lb ? 1 : -1;
}

/** The dialogs list: a changed dialog replaces its row (keeping the preview it had
 *  when the change carries none) and the list stays latest first. */
export const dialogsReducer: Reducer<DialogItem[]> = {
  snapshot: (data) => [...(data as DialogsSnapshot).items].sort(byLast),
  delta: (items, data) => upsertDialog(items, (data as DialogDelta).dialog),
};

export function upsertDialog(items: DialogItem[], dialog: DialogItem): DialogItem[] {
  const old = items.find((d) => d.user.id === dialog.user.id);
  const merged = dialog.preview || !old ? dialog : { ...dialog, preview: old.preview };
  return [merged, ...items.filter((d) => d.user.id !== dialog.user.id)].sort(byLast);
}

/** When a dialog asked for a human, in ms (0 when it does not: last in the list). */
function askedAt(d: DialogItem): number {
  const at = d.handoff ? Date.parse(d.handoff.at) : NaN;
  return Number.isNaN(at) ? 0 : at;
}

/** The dialogs waiting for a human (`bot/{bot}/alerts`), the latest request first. A
 *  delta is a dialog that changed: flagged (it goes first, in place of its older
 *  entry) or answered, its mode switched (`handoff` null: it leaves the list). */
export const alertsReducer: Reducer<DialogItem[]> = {
  snapshot: (data) => (data as AlertsSnapshot).items.filter((d) => d.handoff),
  delta: (items, data) => withAlert(items, (data as DialogDelta).dialog),
};

export function withAlert(items: DialogItem[], dialog: DialogItem): DialogItem[] {
  const others = items.filter((d) => d.user.id !== dialog.user.id);
  if (!dialog.handoff) return others.length === items.length ? items : others;
  // First; the sort (stable) only moves it when its request is older than another's,
  // as when a delta repeats a flag the list already holds.
  return [dialog, ...others].sort((a, b) => askedAt(b) - askedAt(a));
}

/** One dialog as its view shows it: oldest message first. */
export interface DialogView {
  dialog: DialogItem | null;
  messages: Message[];
  /** `before` for older messages; null when the beginning is shown. */
  next: string | null;
}

function byTs(a: Message, b: Message): number {
  return a.ts === b.ts ? 0 : a.ts < b.ts ? -1 : 1;
}

/** Messages added to a list without duplicates (by id), in time order. */
export function addMessages(have: Message[], more: Message[]): Message[] {
  const ids = new Set(have.map((m) => m.id));
  const fresh = more.filter((m) => !ids.has(m.id) && (ids.add(m.id), true));
  return fresh.length ? [...have, ...fresh].sort(byTs) : have;
}

export const dialogReducer: Reducer<DialogView> = {
  snapshot: (data) => {
    const s = data as DialogSnapshot;
    return { dialog: s.dialog ?? null, messages: addMessages([], s.messages), next: s.next ?? null };
  },
  // A message with the dialog's figures after it, (a mode switch) the figures alone, or
  // (an operator message sent or not) a delivery outcome.
  delta: (view, data) => {
    const d = data as MessageDelta | DialogDelta | DeliveryDelta;
    if ('delivery' in d) return withDelivery(view, d.delivery);
    return { ...view, dialog: d.dialog, messages: 'message' in d ? addMessages(view.messages, [d.message]) : view.messages };
  },
};

/** A delivery outcome put on the message it is of (`delivery.message`). The server
 *  sends the message before its outcome, so an id the view does not hold is a message
 *  it does not show: nothing changes. A message sent again later (a repeated delta)
 *  is not added over this one (`addMessages` keeps the first), so its outcome stays. */
export function withDelivery(view: DialogView, delivery: Delivery): DialogView {
  const id = delivery.message;
  const at = id ? view.messages.findIndex((m) => m.id === id) : -1;
  if (at < 0) return view;
  const messages = [...view.messages];
  const { state, reason } = delivery;
  messages[at] = { ...view.messages[at]!, delivery: reason ? { state, reason } : { state } };
  return { ...view, messages };
}

/** A page of older history added to a dialog view. */
export function withOlder(view: DialogView, older: Message[], next: string | null): DialogView {
  return { ...view, messages: addMessages(view.messages, older), next };
}

/** Buckets shown, with those of a live frame put in place (same start); buckets the
 *  frame holds outside what is shown are left out. */
export function mergeBuckets(shown: BucketItem[], incoming: BucketItem[]): BucketItem[] {
  if (!incoming.length) return shown;
  const fresh = new Map(incoming.map((b) => [new Date(b.start).getTime(), b]));
  let changed = false;
  const out = shown.map((b) => {
    const n = fresh.get(new Date(b.start).getTime());
    if (n && n !== b) changed = true;
    return n ?? b;
  });
  return changed ? out : shown;
}

/** Latest first (ids are time-ordered too: ties by id, latest first). */
function byCreated(a: BroadcastItem, b: BroadcastItem): number {
  if (a.created !== b.created) return a.created < b.created ? 1 : -1;
  return a.id === b.id ? 0 : a.id < b.id ? 1 : -1;
}

/** The bot's broadcasts (`bot/{bot}/broadcasts`), the latest first: a delta is one
 *  broadcast's progress, which replaces the item with the same id (a new one joins). */
export const broadcastsReducer: Reducer<BroadcastItem[]> = {
  snapshot: (data) => [...(data as BroadcastsSnapshot).items].sort(byCreated),
  delta: (items, data) => upsertBroadcast(items, (data as BroadcastDelta).broadcast),
};

export function upsertBroadcast(items: BroadcastItem[], b: BroadcastItem): BroadcastItem[] {
  const at = items.findIndex((x) => x.id === b.id);
  if (at < 0) return [b, ...items].sort(byCreated);
  const out = [...items];
  out[at] = b;
  return out;
}
