// Statistics: a dashboard and one page per parameter (Messages, Users, Sessions), over
// a range in the bot's time zone, by hour, day or week; live when the range includes
// today; CSV of exactly what the table shows.

import { useEffect, useRef, useState } from 'preact/hooks';
import { get } from '../api/http';
import type { BucketItem, StatsAnswer, StatsFrame, TopItem } from '../api/types';
import { Chart, type Series } from '../components/Chart';
import { ErrorLine, Link } from '../components/bits';
import { type Granularity, type RangeName, bucketLabel, csvName, localDate, rangeDates, toCsv } from '../format';
import { mergeBuckets } from '../live/reducers';
import { whole } from '../live/topic';
import { type StatsParam, href } from '../router';
import { useLatestRequest, useTopic, useZone } from '../state';
import { TopMessages, useNow } from './Overview';

const statsReducer = whole<StatsFrame | null>();

interface Column {
  label: string;
  value: (b: BucketItem) => number;
  color: string;
}

const C = {
  in: { label: 'Incoming', value: (b: BucketItem) => b.messages_in, color: '#2f6fde' },
  out: { label: 'Outgoing', value: (b: BucketItem) => b.messages_out, color: '#e0782b' },
  all: { label: 'All messages', value: (b: BucketItem) => b.messages_in + b.messages_out, color: '#6b7a90' },
  existing: { label: 'Existing users', value: (b: BucketItem) => b.users_existing, color: '#6b7a90' },
  new: { label: 'New users', value: (b: BucketItem) => b.users_new, color: '#1f9d62' },
  active: { label: 'Unique users', value: (b: BucketItem) => b.users_active, color: '#8a4fd0' },
  sessions: { label: 'Sessions', value: (b: BucketItem) => b.sessions, color: '#c23b5a' },
} satisfies Record<string, Column>;

/** What each page shows: its charts (columns each) and its table's columns. */
const PAGES: Record<StatsParam, { title: string; charts: Array<{ title: string; columns: Column[] }>; table: Column[] }> = {
  dashboard: {
    title: 'Statistics',
    charts: [
      { title: 'Messages: incoming and outgoing', columns: [C.in, C.out] },
      { title: 'Users: existing and new', columns: [C.existing, C.new] },
      { title: 'Unique users', columns: [C.active] },
    ],
    table: [C.in, C.out, C.existing, C.new, C.active],
  },
  messages: {
    title: 'Messages',
    charts: [{ title: 'Messages: incoming and outgoing', columns: [C.in, C.out] }],
    table: [C.in, C.out, C.all],
  },
  users: {
    title: 'Users',
    charts: [
      { title: 'Users: existing and new', columns: [C.existing, C.new] },
      { title: 'Active (unique) users', columns: [C.active] },
    ],
    table: [C.new, C.existing, C.active],
  },
  sessions: {
    title: 'Sessions',
    charts: [{ title: 'Sessions started', columns: [C.sessions] }],
    table: [C.sessions],
  },
};

export function StatisticsPage({ bot, param }: { bot: string; param: StatsParam }) {
  const tz = useZone(bot);
  const [range, setRange] = useState<RangeName>('7d');
  const [granularity, setGranularity] = useState<Granularity>('day');
  const [custom, setCustom] = useState<{ from: string; to: string }>(() => rangeDates('7d', tz));
  const [answer, setAnswer] = useState<StatsAnswer | null>(null);
  const [top, setTop] = useState<TopItem[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  // Named ranges move with the clock (today turns over at midnight in the bot's zone).
  const now = useNow(60_000);
  const { from, to } = range === 'custom' ? custom : rangeDates(range, tz, now);
  const includesToday = from <= localDate(now, tz) && localDate(now, tz) <= to;
  const page = PAGES[param];
  const base = `/api/v1/bots/${encodeURIComponent(bot)}`;
  // The latest live frame that came while the buckets were being read: put in place
  // once they arrive. (A frame is made after the batches that marked it; should the
  // answer already hold later batches, those batches send a later frame, within
  // 250 ms: what is shown is never left behind.)
  const frameWhileReading = useRef<StatsFrame | null>(null);

  useEffect(() => {
    let current = true;
    setAnswer(null);
    frameWhileReading.current = null;
    get<StatsAnswer>(`${base}/stats`, { from, to, bucket: granularity })
      .then((a) => {
        if (!current) return;
        const f = frameWhileReading.current;
        setAnswer(f ? { ...a, buckets: mergeBuckets(a.buckets, f[granularity]) } : a);
        setError(null);
      })
      .catch((e) => current && setError(e));
    return () => {
      current = false;
    };
  }, [bot, from, to, granularity]);

  const topRequest = useLatestRequest();
  const loadTop = () => {
    const current = topRequest();
    get<TopItem[]>(`${base}/top-messages`, { from, to, limit: 20 })
      .then((t) => current() && setTop(t))
      .catch((e) => current() && setError(e));
  };
  const loadTopNow = useRef(loadTop);
  loadTopNow.current = loadTop;
  useEffect(() => {
    if (param === 'messages') loadTop();
  }, [bot, from, to, param]);

  // Live: the statistics topic's buckets replace those shown with the same start.
  const [frame] = useTopic(includesToday ? `bot/${bot}/stats` : null, statsReducer);
  useEffect(() => {
    if (!frame) return;
    if (!answer) {
      frameWhileReading.current = frame;
      return;
    }
    const merged = mergeBuckets(answer.buckets, frame[granularity]);
    if (merged !== answer.buckets) setAnswer({ ...answer, buckets: merged });
  }, [frame]);
  // Top messages follow at most every two seconds.
  const topTimer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (!frame || param !== 'messages' || topTimer.current) return;
    topTimer.current = setTimeout(() => {
      topTimer.current = null;
      loadTopNow.current();
    }, 2000);
  }, [frame]);
  useEffect(() => () => void (topTimer.current && clearTimeout(topTimer.current)), []);

  const buckets = answer?.buckets ?? [];
  const zone = answer?.tz ?? tz;

  // What the table shows, its total line included.
  const download = () =>
    save(
      toCsv(
        ['bucket_start', 'label', ...page.table.map((c) => c.label)],
        [
          ...buckets.map((b) => [b.start, bucketLabel(b.start, granularity, zone), ...page.table.map((c) => c.value(b))]),
          ['', 'Total', ...page.table.map((c) => total(c, buckets))],
        ],
      ),
      csvName(bot, param, from, to),
    );

  return (
    <div class="statistics">
      <nav class="side" aria-label="Statistics">
        {(['dashboard', 'messages', 'users', 'sessions'] as const).map((p) => (
          <Link href={href({ page: 'statistics', bot, param: p })} aria-current={p === param ? 'page' : undefined}>
            {{ dashboard: 'Dashboard', messages: 'Messages', users: 'Users', sessions: 'Sessions' }[p]}
          </Link>
        ))}
      </nav>
      <div class="content">
        <h1>{page.title}</h1>
        <form class="controls" onSubmit={(e) => e.preventDefault()}>
          <fieldset>
            <legend>Range</legend>
            {(['today', '7d', '30d', 'custom'] as const).map((r) => (
              <label>
                <input type="radio" name="range" checked={range === r} onChange={() => setRange(r)} />
                {{ today: 'Today', '7d': '7 days', '30d': '30 days', custom: 'Custom' }[r]}
              </label>
            ))}
            {range === 'custom' && (
              <>
                <label>
                  From <input type="date" value={custom.from} max={custom.to} onChange={(e) => setCustom({ ...custom, from: (e.target as HTMLInputElement).value || custom.from })} />
                </label>
                <label>
                  To <input type="date" value={custom.to} min={custom.from} onChange={(e) => setCustom({ ...custom, to: (e.target as HTMLInputElement).value || custom.to })} />
                </label>
              </>
            )}
          </fieldset>
          <fieldset>
            <legend>By</legend>
            {(['hour', 'day', 'week'] as const).map((g) => (
              <label>
                <input type="radio" name="granularity" checked={granularity === g} onChange={() => setGranularity(g)} />
                {{ hour: 'Hour', day: 'Day', week: 'Week' }[g]}
              </label>
            ))}
          </fieldset>
          <p class="muted zone">
            Time zone: {zone}
            {includesToday ? ' · live' : ''}
          </p>
          <button type="button" onClick={download} disabled={!buckets.length}>
            Export CSV
          </button>
        </form>
        <ErrorLine error={error} />
        {answer === null && !error ? (
          <p class="muted">Loading…</p>
        ) : (
          <>
            <div class={page.charts.length > 1 ? 'grid two' : ''}>
              {page.charts.map((c) => (
                <Chart
                  title={c.title}
                  tz={zone}
                  bucket={{ hour: 3600, day: 86_400, week: 604_800 }[granularity]}
                  starts={buckets.map((b) => b.start)}
                  series={c.columns.map((col): Series => ({ label: col.label, color: col.color, values: buckets.map(col.value) }))}
                />
              ))}
            </div>
            <section class="card" aria-label="Figures by bucket">
              <table class="figures-table">
                <thead>
                  <tr>
                    <th scope="col">{{ hour: 'Hour', day: 'Date', week: 'Week' }[granularity]}</th>
                    {page.table.map((c) => (
                      <th scope="col" class="num">
                        {c.label}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {buckets.map((b) => (
                    <tr>
                      <th scope="row">{bucketLabel(b.start, granularity, zone)}</th>
                      {page.table.map((c) => (
                        <td class="num">{c.value(b)}</td>
                      ))}
                    </tr>
                  ))}
                </tbody>
                <tfoot>
                  <tr>
                    <th scope="row">Total</th>
                    {page.table.map((c) => (
                      <td class="num">{total(c, buckets)}</td>
                    ))}
                  </tr>
                </tfoot>
              </table>
            </section>
            {param === 'messages' && top && (
              <>
                <TopMessages items={top} />
                <button type="button" disabled={!top.length} onClick={() => save(toCsv(['message', 'count'], top.map((t) => [t.text, t.count])), csvName(bot, 'top-messages', from, to))}>
                  Export top messages as CSV
                </button>
              </>
            )}
          </>
        )}
      </div>
    </div>
  );
}

/** A column's total over the buckets shown; none for figures that do not add up
 *  (existing users are a level, unique users are distinct per bucket). */
function total(c: Column, buckets: BucketItem[]): number | '' {
  return c === C.existing || c === C.active ? '' : buckets.reduce((s, b) => s + c.value(b), 0);
}

/** Offers a CSV document as a download. */
function save(csv: string, name: string): void {
  const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv;charset=utf-8' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
