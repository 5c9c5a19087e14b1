// The main page of a bot: the users table, top messages, messages in/out and users
// existing/new by day; all live from the `bot/{bot}/overview` topic. The wall board
// (Board.tsx) shows the same figures without the frame.

import { useEffect, useRef, useState } from 'preact/hooks';
import { HttpError, get } from '../api/http';
import type { BucketItem, Overview, TopItem, UserItem, UsersAnswer } from '../api/types';
import { Chart } from '../components/Chart';
import { Avatar, ErrorLine, Link, ProviderIcon } from '../components/bits';
import { displayName, formatWhen, localDate } from '../format';
import { whole } from '../live/topic';
import { href } from '../router';
import { useLatestRequest, useTopic, useZone } from '../state';

const DAY = 86_400;

export const overviewReducer = whole<Overview | null>();

const EMPTY: Overview = { users: [], top: [], days: [] };

/** The bot's overview; null until the first snapshot (a bot without any figures yet
 *  has an empty one). */
export function useOverview(bot: string): Overview | null {
  const [overview, snapshots] = useTopic(`bot/${bot}/overview`, overviewReducer);
  return snapshots === 0 ? null : (overview ?? EMPTY);
}

/** Today's bucket in the bot's zone (zeros when nothing happened today yet: the last
 *  bucket the server sent may be yesterday's). */
export function todayOf(days: BucketItem[], tz: string, now: Date): BucketItem | null {
  const today = localDate(now, tz);
  return days.find((d) => localDate(new Date(d.start), tz) === today) ?? null;
}

/** The time, again every `ms`: a page showing "today" turns over at midnight. */
export function useNow(ms: number): Date {
  const [now, setNow] = useState(() => new Date());
  useEffect(() => {
    const timer = setInterval(() => setNow(new Date()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

/** All users known at the end of the last day shown (existing + new, PRODUCT.md). */
export function knownUsers(days: BucketItem[]): number {
  const last = days[days.length - 1];
  return last ? last.users_existing + last.users_new : 0;
}

export function MessagesChart({ days, tz, height }: { days: BucketItem[]; tz: string; height?: number }) {
  return (
    <Chart
      title="Messages by day: incoming and outgoing"
      tz={tz}
      bucket={DAY}
      height={height}
      starts={days.map((d) => d.start)}
      series={[
        { label: 'Incoming', color: '#2f6fde', values: days.map((d) => d.messages_in) },
        { label: 'Outgoing', color: '#e0782b', values: days.map((d) => d.messages_out) },
      ]}
    />
  );
}

export function UsersChart({ days, tz, height }: { days: BucketItem[]; tz: string; height?: number }) {
  return (
    <Chart
      title="Users by day: existing and new"
      tz={tz}
      bucket={DAY}
      height={height}
      starts={days.map((d) => d.start)}
      series={[
        { label: 'Existing', color: '#6b7a90', values: days.map((d) => d.users_existing) },
        { label: 'New', color: '#1f9d62', values: days.map((d) => d.users_new) },
      ]}
    />
  );
}

export function OverviewPage({ bot }: { bot: string }) {
  const tz = useZone(bot);
  const overview = useOverview(bot);
  const days = overview?.days ?? [];
  return (
    <>
      <h1>
        {bot} <span class="muted">overview</span>
      </h1>
      {overview === null ? (
        <p class="muted">Waiting for the first figures…</p>
      ) : (
        <>
          <div class="grid two">
            <MessagesChart days={days} tz={tz} />
            <UsersChart days={days} tz={tz} />
          </div>
          <div class="grid main">
            <UsersTable bot={bot} tz={tz} live={overview.users} total={knownUsers(days)} />
            <TopMessages items={overview.top} />
          </div>
        </>
      )}
    </>
  );
}

export function TopMessages({ items, limit }: { items: TopItem[]; limit?: number }) {
  const shown = limit ? items.slice(0, limit) : items;
  return (
    <section class="card" aria-labelledby="top-h">
      <h2 id="top-h">Top messages</h2>
      {shown.length === 0 ? (
        <p class="muted">No messages from users yet.</p>
      ) : (
        <table class="top-list">
          <thead>
            <tr>
              <th scope="col">Message</th>
              <th scope="col" class="num">
                Count
              </th>
            </tr>
          </thead>
          <tbody>
            {shown.map((t) => (
              <tr>
                <td class="text">{t.text}</td>
                <td class="num">{t.count}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

type Sort = 'last' | 'messages' | 'sessions' | 'name';
const PAGE = 50;
const COLUMNS: Array<{ key: Sort | null; label: string; num?: boolean }> = [
  { key: 'name', label: 'Name' },
  { key: 'messages', label: 'Messages', num: true },
  { key: 'last', label: 'Last' },
  { key: 'sessions', label: 'Sessions', num: true },
  { key: null, label: 'Chat' },
];

/** The users table: sorted and paged by the server (cursors, so a million users page
 *  as fast as ten); the first page by latest activity is the live one. */
export function UsersTable({ bot, tz, live, total }: { bot: string; tz: string; live: UserItem[]; total: number }) {
  const [sort, setSort] = useState<Sort>('last');
  const [order, setOrder] = useState<'desc' | 'asc'>('desc');
  // The cursor of each page seen so far: pages[0] is the first (no cursor).
  const [pages, setPages] = useState<string[]>(['']);
  const [answer, setAnswer] = useState<UsersAnswer | null>(null);
  const [error, setError] = useState<unknown>(null);
  const page = pages.length - 1;
  const liveView = sort === 'last' && order === 'desc' && page === 0;
  const url = `/api/v1/bots/${encodeURIComponent(bot)}/users`;

  // Only the answer to the latest request is shown (an older one may arrive last).
  const request = useLatestRequest();
  const load = () => {
    const current = request();
    get<UsersAnswer>(url, { sort, order, limit: PAGE, cursor: pages[page] })
      .then((a) => {
        if (!current()) return;
        setAnswer(a);
        setError(null);
      })
      // 404: the bot has no event yet; its first one arrives on the live page.
      .catch((e) => current() && setError(e instanceof HttpError && e.status === 404 ? null : e));
  };
  // The timer below calls the load of the latest render (its sort, order and page).
  const loadNow = useRef(load);
  loadNow.current = load;

  useEffect(load, [bot, sort, order, page]);

  // Other views than the live one are read again when the figures move (at most every
  // two seconds), so they stay current too.
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (liveView || timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      loadNow.current();
    }, 2000);
  }, [live]);
  useEffect(() => () => void (timer.current && clearTimeout(timer.current)), []);

  // The page after the live one starts where the live one ends now, not where it
  // ended when the page was first read.
  const next = async () => {
    if (!liveView) {
      if (answer?.next) setPages([...pages, answer.next]);
      return;
    }
    try {
      const first = await get<UsersAnswer>(url, { sort, order, limit: PAGE });
      if (first.next) setPages(['', first.next]);
    } catch (e) {
      setError(e);
    }
  };

  const rows = liveView ? live.slice(0, PAGE) : (answer?.items ?? []);
  const count = liveView ? Math.max(total, rows.length) : (answer?.total ?? 0);
  const first = page * PAGE;

  const sortBy = (key: Sort) => {
    if (key === sort) setOrder(order === 'desc' ? 'asc' : 'desc');
    else {
      setSort(key);
      setOrder(key === 'name' ? 'asc' : 'desc');
    }
    setPages(['']);
  };

  return (
    <section class="card users" aria-labelledby="users-h">
      <h2 id="users-h">
        Users <span class="muted">{count.toLocaleString('en')}</span>
      </h2>
      <ErrorLine error={error} />
      <table>
        <thead>
          <tr>
            {COLUMNS.map((c) => (
              <th scope="col" class={c.num ? 'num' : undefined} aria-sort={c.key === sort ? (order === 'asc' ? 'ascending' : 'descending') : undefined}>
                {c.key ? (
                  <button type="button" class="sort" onClick={() => sortBy(c.key as Sort)}>
                    {c.label}
                    <span aria-hidden="true">{c.key === sort ? (order === 'asc' ? ' ▲' : ' ▼') : ''}</span>
                  </button>
                ) : (
                  c.label
                )}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((u) => (
            <tr key={u.id} data-user={u.id}>
              <td class="who">
                <Avatar user={u} size={28} />
                <span class="name">{displayName(u)}</span>
                <ProviderIcon provider={u.provider} />
              </td>
              <td class="num">{u.messages}</td>
              <td>
                <time dateTime={u.last ?? undefined}>{formatWhen(u.last, tz)}</time>
              </td>
              <td class="num">{u.sessions}</td>
              <td>
                <Link class="chat" href={href({ page: 'dialogs', bot, user: u.id, mode: 'all' })} aria-label={`Chat with ${displayName(u)}`}>
                  CHAT
                </Link>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {rows.length === 0 && <p class="muted">No users yet.</p>}
      <div class="pager">
        <span>
          {rows.length ? `${(first + 1).toLocaleString('en')}–${(first + rows.length).toLocaleString('en')} of ${count.toLocaleString('en')}` : ''}
        </span>
        <button type="button" disabled={page === 0} onClick={() => setPages(pages.slice(0, -1))}>
          Previous
        </button>
        <button type="button" disabled={!answer?.next} onClick={() => void next()}>
          Next
        </button>
      </div>
    </section>
  );
}
