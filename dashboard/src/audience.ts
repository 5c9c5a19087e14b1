// The Audience and Broadcasts pages' logic: the users table's filters as a query and
// as the JSON filter of bulk edits and broadcasts, what a user's edit form changed (one
// PATCH), the bulk request, the broadcast request. Pure: unit-tested in tests/.

import { type Params, withParams } from './api/http';
import type { Audience, BroadcastRequest, BulkRequest, Card, ProfileAnswer, UserItem, UserPatch } from './api/types';

export type UserSort = 'last' | 'messages' | 'sessions' | 'name';
export type SortOrder = 'asc' | 'desc';
export type UserMode = 'auto' | 'manual';

/** The users table's filters: several values in one group OR, groups AND. */
export interface AudienceFilters {
  /** Any part of the name (the server folds case in any script). */
  search: string;
  provider: string[];
  tag: string[];
  role: string[];
  /** Subscribers only (false: no filter on the flag). */
  subscriber: boolean;
  mode: UserMode[];
}

export const NO_FILTERS: AudienceFilters = { search: '', provider: [], tag: [], role: [], subscriber: false, mode: [] };

/** The filter groups with several values. */
export type FilterGroup = 'provider' | 'tag' | 'role' | 'mode';

/** `value` added to its group, or taken out when it was in. */
export function toggleValue(filters: AudienceFilters, group: FilterGroup, value: string): AudienceFilters {
  const have = filters[group] as string[];
  const next = have.includes(value) ? have.filter((v) => v !== value) : [...have, value];
  return { ...filters, [group]: next };
}

/** Whether any filter narrows the table. */
export function isFiltered(f: AudienceFilters): boolean {
  return f.search.trim() !== '' || f.provider.length > 0 || f.tag.length > 0 || f.role.length > 0 || f.subscriber || f.mode.length > 0;
}

/** The filters as query parameters (`tag=A&tag=B`: repeated, which the server ORs). */
export function filterParams(f: AudienceFilters): Params {
  return {
    search: f.search.trim() || null,
    provider: f.provider,
    tag: f.tag,
    role: f.role,
    subscriber: f.subscriber ? true : null,
    mode: f.mode,
  };
}

/** `GET …/users?…`: a page of the table. */
export function usersUrl(bot: string, f: AudienceFilters, page: { sort?: UserSort; order?: SortOrder; limit?: number; cursor?: string | null } = {}): string {
  return withParams(`/api/v1/bots/${encodeURIComponent(bot)}/users`, {
    ...filterParams(f),
    sort: page.sort,
    order: page.order,
    limit: page.limit,
    cursor: page.cursor,
  });
}

/** `GET …/users.csv?…`: the CSV of everything the filters let through. */
export function csvUrl(bot: string, f: AudienceFilters): string {
  return withParams(`/api/v1/bots/${encodeURIComponent(bot)}/users.csv`, filterParams(f));
}

/** The filter as the JSON of a bulk edit or a broadcast: groups without a value left out. */
export type FilterBody = { search?: string; provider?: string[]; tag?: string[]; role?: string[]; subscriber?: boolean; mode?: UserMode[] };

export function filterBody(f: AudienceFilters): FilterBody {
  const b: FilterBody = {};
  if (f.search.trim()) b.search = f.search.trim();
  if (f.provider.length) b.provider = [...f.provider];
  if (f.tag.length) b.tag = [...f.tag];
  if (f.role.length) b.role = [...f.role];
  if (f.subscriber) b.subscriber = true;
  if (f.mode.length) b.mode = [...f.mode];
  return b;
}

/** The filter a broadcast was started with, in words: `provider: telegram · tag: VIP, new`. */
export function describeFilter(filter: Record<string, unknown> | null | undefined): string {
  if (!filter || typeof filter !== 'object' || Array.isArray(filter)) return '';
  return Object.entries(filter)
    .map(([k, v]) => {
      const values = (Array.isArray(v) ? v : v === null || v === undefined ? [] : [v]).map(String);
      return values.length ? `${k}: ${values.join(', ')}` : '';
    })
    .filter(Boolean)
    .join(' · ');
}

// ---------------------------------------------------------------------------------------
// A user's edit form

export interface CustomField {
  /** A stable key for the row. */
  key: number;
  name: string;
  value: string;
}

/** What the edit form holds. */
export interface EditForm {
  name: string;
  gender: string;
  /** '' : no role. */
  role: string;
  subscriber: boolean;
  autoMode: boolean;
  tags: string[];
  phone: string;
  email: string;
  /** Information fields other than phone and e-mail. */
  custom: CustomField[];
}

/** The information fields with a place of their own in the form. */
export const OWN_FIELDS = ['phone', 'email'] as const;

/** The form filled from a profile (or a row of the table). */
export function formOf(p: UserItem | ProfileAnswer): EditForm {
  const fields = p.fields ?? {};
  let key = 0;
  return {
    name: p.name ?? '',
    gender: p.gender ?? '',
    role: p.role ?? '',
    subscriber: p.subscriber,
    autoMode: 'auto_mode' in p ? p.auto_mode : p.mode !== 'manual',
    tags: [...p.tags],
    phone: fields.phone ?? '',
    email: fields.email ?? '',
    custom: Object.entries(fields)
      .filter(([k]) => !(OWN_FIELDS as readonly string[]).includes(k))
      .map(([name, value]) => ({ key: key++, name, value })),
  };
}

/** What is wrong with the form, in words; null when it can be saved. */
export function formProblem(form: EditForm): string | null {
  const seen = new Set<string>(OWN_FIELDS);
  for (const c of form.custom) {
    const name = c.name.trim();
    if (!name) {
      if (c.value.trim()) return 'A custom field needs a name.';
      continue;
    }
    if (seen.has(name)) return (OWN_FIELDS as readonly string[]).includes(name) ? `“${name}” has its own place above.` : `Two fields are named “${name}”.`;
    seen.add(name);
  }
  return null;
}

/** `PATCH …/users/{user}`: a field given as null (or "") is removed. The generated
 *  `UserPatch` types field values as strings only. */
export type PatchBody = Omit<UserPatch, 'fields'> & { fields?: Record<string, string | null> };

/** The information fields the form holds (empty values included: they remove). */
function formFields(form: EditForm): Record<string, string> {
  const out: Record<string, string> = { phone: form.phone.trim(), email: form.email.trim() };
  for (const c of form.custom) if (c.name.trim()) out[c.name.trim()] = c.value.trim();
  return out;
}

const sameSet = (a: string[], b: string[]) => a.length === b.length && new Set(a).size === new Set([...a, ...b]).size;

/** One PATCH with only what the form changed against the profile; `{}` when nothing. */
export function patchOf(p: UserItem | ProfileAnswer, form: EditForm): PatchBody {
  const was = formOf(p);
  const patch: PatchBody = {};
  // An emptied name or gender sends "": the channel's again.
  if (form.name.trim() !== was.name.trim()) patch.name = form.name.trim();
  if (form.gender.trim() !== was.gender.trim()) patch.gender = form.gender.trim();
  if (form.role !== was.role) patch.role = form.role || null;
  if (!sameSet(form.tags, was.tags)) patch.tags = [...form.tags];
  if (form.subscriber !== was.subscriber) patch.subscriber = form.subscriber;
  if (form.autoMode !== was.autoMode) patch.auto_mode = form.autoMode;
  const now = formFields(form);
  const before = p.fields ?? {};
  const fields: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(now)) {
    if (v === (before[k] ?? '')) continue;
    fields[k] = v === '' ? null : v;
  }
  for (const k of Object.keys(before)) if (!(k in now)) fields[k] = null;
  if (Object.keys(fields).length) patch.fields = fields;
  return patch;
}

/** The tags of the form the bot does not have yet (created before the PATCH). */
export function newTags(form: EditForm, known: string[]): string[] {
  return form.tags.filter((t) => !known.includes(t));
}

// ---------------------------------------------------------------------------------------
// Bulk edits

/** Which users a bulk edit changes: those ticked, or all the filters let through. */
export type BulkTarget = { ids: string[] } | { filter: AudienceFilters };

export type BulkAction =
  | { kind: 'role'; role: string }
  | { kind: 'subscriber'; on: boolean }
  | { kind: 'auto_mode'; on: boolean }
  | { kind: 'add_tag'; tag: string }
  | { kind: 'remove_tag'; tag: string };

/** `POST …/users/bulk`: either `ids` or `filter`, and one change (the type says both). */
export function bulkBody(target: BulkTarget, action: BulkAction): BulkRequest {
  const who: { ids: string[] } | { filter: NonNullable<BulkRequest['filter']> } =
    'ids' in target ? { ids: [...target.ids] } : { filter: filterBody(target.filter) as NonNullable<BulkRequest['filter']> };
  switch (action.kind) {
    case 'role':
      return { ...who, set: { role: action.role || null } };
    case 'subscriber':
      return { ...who, set: { subscriber: action.on } };
    case 'auto_mode':
      return { ...who, set: { auto_mode: action.on } };
    case 'add_tag':
      return { ...who, add_tags: [action.tag] };
    case 'remove_tag':
      return { ...who, remove_tags: [action.tag] };
  }
}

// ---------------------------------------------------------------------------------------
// Broadcasts

/** The filter groups a broadcast's composer offers. */
export type BroadcastFilters = Pick<AudienceFilters, 'provider' | 'tag' | 'role'>;

export const NO_BROADCAST_FILTERS: BroadcastFilters = { provider: [], tag: [], role: [] };

function asAudienceFilters(f: BroadcastFilters, to: Audience): AudienceFilters {
  return { ...NO_FILTERS, ...f, subscriber: to === 'subscribers' };
}

/** `GET …/users?…&limit=1`: its `total` is how many would receive a broadcast. */
export function recipientsUrl(bot: string, to: Audience, f: BroadcastFilters): string {
  return usersUrl(bot, asAudienceFilters(f, to), { limit: 1 });
}

/** `POST …/broadcasts`: the filter only when one is chosen; the text only when written
 *  (without a card it goes as it is: the server says that a message needs one). */
export function broadcastBody(to: Audience, f: BroadcastFilters, text: string, card: Card | null): BroadcastRequest {
  const chosen = filterBody({ ...NO_FILTERS, ...f });
  const who = Object.keys(chosen).length ? { to, filter: chosen as BroadcastRequest['filter'] } : { to };
  if (!card) return { ...who, text };
  return text.trim() ? { ...who, text, card } : { ...who, card };
}

/** What a broadcast has handled of its recipients. */
export function progressOf(b: { total: number; sent: number; failed: number; skipped: number }): { handled: number; percent: number } {
  const handled = b.sent + b.failed + b.skipped;
  return { handled, percent: b.total > 0 ? Math.min(100, Math.round((handled / b.total) * 100)) : 100 };
}

export const FINAL_STATES = ['done', 'cancelled'];

/** Calls `f` at most once per `ms`: the first call at once, later ones within the
 *  interval folded into one call at its end. */
export function throttle(f: () => void, ms: number, timers: { now: () => number; set: (g: () => void, ms: number) => unknown; clear: (t: unknown) => void } = defaultTimers) {
  let last = -Infinity;
  let pending: unknown = null;
  const run = () => {
    pending = null;
    last = timers.now();
    f();
  };
  return {
    call() {
      if (pending !== null) return;
      const wait = last + ms - timers.now();
      if (wait <= 0) run();
      else pending = timers.set(run, wait);
    },
    cancel() {
      if (pending !== null) timers.clear(pending);
      pending = null;
    },
  };
}

const defaultTimers = {
  now: () => Date.now(),
  set: (g: () => void, ms: number) => setTimeout(g, ms),
  clear: (t: unknown) => clearTimeout(t as ReturnType<typeof setTimeout>),
};
