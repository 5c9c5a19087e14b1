// Broadcasts: one message (a text, a card, or both) to the bot's subscribers or to all
// its users, within filters, with a live count of who would get it; and the broadcasts
// so far with their progress, live from `bot/{bot}/broadcasts`, each one's failures on
// demand.

import { useEffect, useState } from 'preact/hooks';
import { HttpError, get, request } from '../api/http';
import type { Audience, BroadcastCreated, BroadcastItem, FacetsItem, UsersAnswer } from '../api/types';
import { type BroadcastFilters, FINAL_STATES, NO_BROADCAST_FILTERS, broadcastBody, describeFilter, progressOf, recipientsUrl } from '../audience';
import { type CardDraft, EMPTY_CARD, cardOf } from '../card';
import { ErrorLine, Link, providerName } from '../components/bits';
import { CardFields } from '../components/CardFields';
import { formatWhen, plural } from '../format';
import { broadcastsReducer } from '../live/reducers';
import { href } from '../router';
import { canEdit, useLatestRequest, useLiveRefresh, useTopic, useZone } from '../state';
import { overviewReducer } from './Overview';

const PREVIEW_DELAY_MS = 250;
const api = (bot: string) => `/api/v1/bots/${encodeURIComponent(bot)}`;

export function BroadcastsPage({ bot }: { bot: string }) {
  const tz = useZone(bot);
  const [items, snapshots] = useTopic(`bot/${bot}/broadcasts`, broadcastsReducer);
  const editable = canEdit();
  return (
    <div class="broadcasts-page">
      <h1>Broadcasts</h1>
      {editable ? <BroadcastComposer bot={bot} /> : <p class="muted">Operators and admins send broadcasts; you see their progress.</p>}
      <section class="card" aria-labelledby="sent-h">
        <h2 id="sent-h">Sent and sending</h2>
        {snapshots === 0 ? (
          <p class="muted">Loading…</p>
        ) : !items || items.length === 0 ? (
          <p class="muted">No broadcasts yet.</p>
        ) : (
          <ul class="broadcast-list">
            {items.map((b) => (
              <BroadcastRow key={b.id} bot={bot} b={b} tz={tz} editable={editable} />
            ))}
          </ul>
        )}
      </section>
    </div>
  );
}

// ---------------------------------------------------------------------------------------

function BroadcastComposer({ bot }: { bot: string }) {
  const [to, setTo] = useState<Audience>('subscribers');
  const [filters, setFilters] = useState<BroadcastFilters>(NO_BROADCAST_FILTERS);
  const [preview, setPreview] = useState<{ total: number; facets: FacetsItem } | null>(null);
  const [text, setText] = useState('');
  const [withCard, setWithCard] = useState(false);
  const [card, setCard] = useState<CardDraft>(EMPTY_CARD);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [status, setStatus] = useState<string | null>(null);

  // How many would receive it: read again (after a pause) when the choice changes, and
  // when the figures move.
  const latest = useLatestRequest();
  const count = () => {
    const current = latest();
    get<UsersAnswer>(recipientsUrl(bot, to, filters))
      .then((a) => current() && setPreview({ total: a.total, facets: a.facets }))
      .catch((e) => current() && !(e instanceof HttpError && e.status === 404) && setError(e));
  };
  useEffect(() => {
    const timer = setTimeout(count, PREVIEW_DELAY_MS);
    return () => clearTimeout(timer);
  }, [bot, to, filters]);
  useLiveRefresh(`bot/${bot}/overview`, overviewReducer, count, 1000);

  const toggle = (group: keyof BroadcastFilters, value: string) => {
    setStatus(null);
    setFilters((f) => ({ ...f, [group]: f[group].includes(value) ? f[group].filter((v) => v !== value) : [...f[group], value] }));
  };
  const hasContent = text.trim() !== '' || withCard;

  const send = async () => {
    if (busy || !hasContent) return;
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const body = broadcastBody(to, filters, text, withCard ? cardOf(card) : null);
      const created = await request<BroadcastCreated>('POST', `${api(bot)}/broadcasts`, body);
      setStatus(`Broadcast started: ${plural(created.total, 'recipient')}.`);
      setText('');
      setCard(EMPTY_CARD);
      setWithCard(false);
    } catch (e) {
      setError(new Error(`Not sent: ${e instanceof Error ? e.message : String(e)}`));
    } finally {
      setBusy(false);
    }
  };

  const facets = preview?.facets;
  const groups: Array<[keyof BroadcastFilters, string, Record<string, number>]> = [
    ['provider', 'Provider', facets?.provider ?? {}],
    ['tag', 'Tag', facets?.tag ?? {}],
    ['role', 'Role', facets?.role ?? {}],
  ];
  return (
    <section class="card composer-card" aria-labelledby="compose-h">
      <h2 id="compose-h">New broadcast</h2>
      <form
        class="broadcast-form"
        onSubmit={(e) => {
          e.preventDefault();
          void send();
        }}
      >
        <fieldset class="audience-choice" disabled={busy}>
          <legend>To</legend>
          <label>
            <input type="radio" name="to" value="subscribers" checked={to === 'subscribers'} onChange={() => setTo('subscribers')} /> Subscribers
          </label>
          <label>
            <input type="radio" name="to" value="all" checked={to === 'all'} onChange={() => setTo('all')} /> All users
          </label>
        </fieldset>
        {groups.map(([group, legend, counts]) => {
          const values = [...Object.keys(counts), ...filters[group].filter((v) => !(v in counts))];
          if (values.length === 0) return null;
          return (
            <fieldset class="chips-filter" data-facet={group} disabled={busy}>
              <legend>{legend}</legend>
              {values.map((v) => (
                <button type="button" class="chip" data-value={v} aria-pressed={filters[group].includes(v)} onClick={() => toggle(group, v)}>
                  {group === 'provider' ? providerName(v) : v} <span class="count">{(counts[v] ?? 0).toLocaleString('en')}</span>
                </button>
              ))}
            </fieldset>
          );
        })}
        <p class="recipients" role="status" data-recipients={preview?.total ?? ''}>
          {preview === null ? 'Counting recipients…' : preview.total === 0 ? 'Nobody matches: choose other filters.' : `${plural(preview.total, 'recipient')}`}
        </p>
        <label class="broadcast-text">
          Message
          <textarea rows={4} value={text} disabled={busy} onInput={(e) => setText(e.currentTarget.value)} placeholder="What every recipient gets" />
        </label>
        <label class="with-card">
          <input type="checkbox" checked={withCard} disabled={busy} onChange={(e) => setWithCard(e.currentTarget.checked)} /> Add a card (a title, a picture, buttons)
        </label>
        {withCard && (
          <fieldset class="card-box" disabled={busy}>
            <legend>Card</legend>
            <CardFields draft={card} setDraft={setCard} autoFocus />
          </fieldset>
        )}
        <div class="actions">
          <button type="submit" class="primary" disabled={busy || !hasContent}>
            {busy ? 'Sending…' : preview && preview.total > 0 ? `Send to ${plural(preview.total, 'user')}` : 'Send'}
          </button>
          <span role="status" class="ok">
            {status}
          </span>
        </div>
        <ErrorLine error={error} />
      </form>
    </section>
  );
}

// ---------------------------------------------------------------------------------------

const STATE_NAMES: Record<string, string> = { queued: 'Queued', running: 'Running', done: 'Done', cancelled: 'Cancelled' };

/** What a broadcast said: its text, else its card's title. */
function previewOf(b: BroadcastItem): string {
  if (b.text?.trim()) return b.text;
  const card = (b.attachments as Array<{ type?: string; title?: string }>).find((a) => a.type === 'card');
  return card?.title ? `Card: ${card.title}` : '(no text)';
}

function BroadcastRow({ bot, b, tz, editable }: { bot: string; b: BroadcastItem; tz: string; editable: boolean }) {
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const { handled, percent } = progressOf(b);
  const filter = describeFilter(b.filter);
  const final = FINAL_STATES.includes(b.state);
  const cancel = async () => {
    setBusy(true);
    setError(null);
    try {
      await request('DELETE', `${api(bot)}/broadcasts/${encodeURIComponent(b.id)}`);
    } catch (e) {
      setError(new Error(`Not cancelled: ${e instanceof Error ? e.message : String(e)}`));
    } finally {
      setBusy(false);
    }
  };
  return (
    <li class="broadcast" data-broadcast={b.id} data-state={b.state}>
      <div class="line">
        <button type="button" class="link text" aria-expanded={open} onClick={() => setOpen(!open)}>
          {previewOf(b)}
        </button>
        <span class={`state state-${b.state}`}>{STATE_NAMES[b.state] ?? b.state}</span>
      </div>
      <p class="muted meta">
        <time dateTime={b.created}>{formatWhen(b.created, tz)}</time>
        {b.by ? ` · by ${b.by.replace(/^user:/, '')}` : ''} · to {b.to === 'all' ? 'all users' : 'subscribers'}
        {filter ? ` (${filter})` : ''}
      </p>
      <div class="progress-line">
        <progress max={Math.max(1, b.total)} value={Math.min(handled, Math.max(1, b.total))} aria-label={`Progress: ${handled} of ${b.total}`} />
        <span class="numbers">
          <span data-figure="sent">{b.sent.toLocaleString('en')} sent</span> · <span data-figure="failed">{b.failed.toLocaleString('en')} failed</span> ·{' '}
          <span data-figure="skipped">{b.skipped.toLocaleString('en')} skipped</span> of <span data-figure="total">{b.total.toLocaleString('en')}</span> ({percent}%)
        </span>
        {editable && !final && (
          <button type="button" aria-label="Cancel the broadcast" disabled={busy} onClick={() => void cancel()}>
            Cancel
          </button>
        )}
      </div>
      <ErrorLine error={error} />
      {open && <Failures bot={bot} b={b} />}
    </li>
  );
}

/** Who did not get a broadcast, and why (read again as it goes on). */
function Failures({ bot, b }: { bot: string; b: BroadcastItem }) {
  const [failures, setFailures] = useState<BroadcastItem['failures'] | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    get<BroadcastItem>(`${api(bot)}/broadcasts/${encodeURIComponent(b.id)}`)
      .then((a) => {
        setFailures(a.failures ?? []);
        setError(null);
      })
      .catch(setError);
  }, [bot, b.id, b.failed]);
  return (
    <div class="failures">
      <ErrorLine error={error} />
      {failures === undefined ? (
        <p class="muted">Loading…</p>
      ) : !failures || failures.length === 0 ? (
        <p class="muted">No failures{b.skipped ? ` (${plural(b.skipped, 'user')} skipped: in Manual mode, an operator was talking to them)` : ''}.</p>
      ) : (
        <table>
          <caption class="sr-only">Failures</caption>
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Why</th>
            </tr>
          </thead>
          <tbody>
            {failures.map((f) => (
              <tr data-user={f.user}>
                <td>
                  <Link href={href({ page: 'dialogs', bot, user: f.user, mode: 'all' })}>{f.user}</Link>
                </td>
                <td class="text">{f.reason}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {b.failed > (failures?.length ?? 0) && failures && failures.length > 0 && <p class="muted">The first {failures.length} of {b.failed} failures.</p>}
    </div>
  );
}
