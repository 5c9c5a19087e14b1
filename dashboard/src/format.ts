// Pure helpers for what the pages show: names, initials, safe links, times and dates in
// the bot's zone, CSV. Nothing here touches the DOM.

/** A user's name as shown: the name, else the id. */
export function displayName(u: { id: string; name?: string | null }): string {
  const name = u.name?.trim();
  return name ? name : u.id;
}

/** Up to two letters of a name (any script), for an avatar without a picture. */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/u).filter((w) => /[\p{L}\p{N}]/u.test(w));
  const first = (w: string | undefined) => (w ? ([...w.replace(/^[^\p{L}\p{N}]+/u, '')][0] ?? '') : '');
  const letters = words.length > 1 ? first(words[0]) + first(words[words.length - 1]) : first(words[0]);
  return letters.toUpperCase() || '?';
}

/** The URL when it is http(s), else null: a `javascript:` or `data:` address from a
 *  chat user never becomes a link or an image source. */
export function safeUrl(url: string | null | undefined): string | null {
  if (!url) return null;
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

/** `1 message`, `3 messages`. */
export function plural(n: number, word: string): string {
  return `${n.toLocaleString('en')} ${word}${n === 1 ? '' : 's'}`;
}

/** A byte count for people. */
export function formatBytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(tz: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const key = tz + JSON.stringify(options);
  let f = formatters.get(key);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { ...options, timeZone: tz });
    formatters.set(key, f);
  }
  return f;
}

/** A moment in the bot's zone: the time today, else the date and time. */
export function formatWhen(iso: string | null | undefined, tz: string, now: Date = new Date()): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = localDate(d, tz) === localDate(now, tz);
  return sameDay
    ? formatter(tz, { hour: '2-digit', minute: '2-digit' }).format(d)
    : formatter(tz, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
}

export type Granularity = 'hour' | 'day' | 'week';

/** A bucket's start as its label: `27 Nov 14:00`, `27 Nov`, `week of 23 Nov`. */
export function bucketLabel(iso: string, granularity: Granularity, tz: string): string {
  const d = new Date(iso);
  switch (granularity) {
    case 'hour':
      return formatter(tz, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
    case 'day':
      return formatter(tz, { day: 'numeric', month: 'short', year: 'numeric' }).format(d);
    case 'week':
      return 'week of ' + formatter(tz, { day: 'numeric', month: 'short', year: 'numeric' }).format(d);
  }
}

/** The date (YYYY-MM-DD) of a moment in a zone. */
export function localDate(d: Date, tz: string): string {
  const parts = formatter(tz, { year: 'numeric', month: '2-digit', day: '2-digit' }).formatToParts(d);
  const part = (t: string) => parts.find((p) => p.type === t)?.value ?? '';
  return `${part('year')}-${part('month')}-${part('day')}`;
}

/** A plain date plus some days (negative: earlier). */
export function addDays(date: string, days: number): string {
  const d = new Date(date + 'T00:00:00Z');
  d.setUTCDate(d.getUTCDate() + days);
  return d.toISOString().slice(0, 10);
}

export type RangeName = 'today' | '7d' | '30d' | 'custom';

/** The dates (inclusive, in the bot's zone) a named range covers. */
export function rangeDates(range: Exclude<RangeName, 'custom'>, tz: string, now: Date = new Date()): { from: string; to: string } {
  const today = localDate(now, tz);
  const back = { today: 0, '7d': 6, '30d': 29 }[range];
  return { from: addDays(today, -back), to: today };
}

/** One CSV cell: quoted when needed; a cell that a spreadsheet would run as a formula
 *  (`=`, `+`, `-`, `@`, tab, CR at the start) gets a leading apostrophe. */
export function csvCell(value: string | number | boolean | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'string') return String(value);
  let s = value;
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A CSV document (RFC 4180 line ends) from a header and rows. */
export function toCsv(header: string[], rows: Array<Array<string | number | boolean | null | undefined>>): string {
  return [header, ...rows].map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}

/** A file name for an export: `botwatch-<bot>-<what>-<from>-<to>.csv`. */
export function csvName(bot: string, what: string, from: string, to: string): string {
  return `botwatch-${bot}-${what}-${from}_${to}.csv`.replace(/[^A-Za-z0-9._-]/g, '_');
}
