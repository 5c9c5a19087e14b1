// Dialogs: the latest dialogs first (live from `bot/{bot}/dialogs`), filtered by mode,
// and the dialog view (live from `bot/{bot}/dialog/{user}`), older history on scroll.

import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { get } from '../api/http';
import type { Attachment, Delivery, DialogItem, DialogsAnswer, HandoffView, HistoryAnswer, Message } from '../api/types';
import { Avatar, ErrorLine, HandRaised, Headphones, Link, ProviderIcon } from '../components/bits';
import { Composer } from '../components/Composer';
import { displayName, formatBytes, formatWhen, plural, safeUrl } from '../format';
import { type DialogView, dialogReducer, dialogsReducer, upsertDialog, withOlder } from '../live/reducers';
import { type ModeFilter, href, navigate } from '../router';
import { leftInManual, session, switchMode, useLatestRequest, useTopic, useZone } from '../state';

const MODES: ModeFilter[] = ['all', 'auto', 'manual'];

/** `mode`: the filter, which lives in the address (`?mode=`), so Back and Forward
 *  bring it back too. */
export function DialogsPage({ bot, user, mode }: { bot: string; user: string | null; mode: ModeFilter }) {
  const tz = useZone(bot);
  const [live, snapshots] = useTopic(`bot/${bot}/dialogs`, dialogsReducer);
  // Older dialogs than the live list holds, read page by page.
  const [older, setOlder] = useState<{ items: DialogItem[]; next: string | null; loading: boolean }>({ items: [], next: null, loading: false });
  const [error, setError] = useState<unknown>(null);

  // Only the answer to the latest request counts (a page asked for under another
  // filter must not land in this one).
  const request = useLatestRequest();
  const load = (cursor: string | null) => {
    const current = request();
    setOlder((o) => ({ ...o, loading: true }));
    get<DialogsAnswer>(`/api/v1/bots/${encodeURIComponent(bot)}/dialogs`, { mode: mode === 'all' ? null : mode, limit: 50, cursor })
      .then((a) => {
        if (!current()) return;
        setOlder((o) => ({ items: cursor ? [...o.items, ...a.items] : a.items, next: a.next ?? null, loading: false }));
        setError(null);
      })
      .catch((e) => {
        if (!current()) return;
        setOlder((o) => ({ ...o, loading: false }));
        setError(e);
      });
  };
  // Read again from the top when the filter changes, and when a fresh snapshot of the
  // list came (after a reconnect): what was read before may be older than it.
  useEffect(() => load(null), [bot, mode, snapshots > 1 ? snapshots : 1]);

  // The live list wins over what was read (it is newer); the mode filter applies to both.
  let items = older.items;
  for (const d of live ?? []) items = upsertDialog(items, d);
  const shown = items.filter((d) => mode === 'all' || d.mode === mode);

  const choose = (m: ModeFilter) => navigate(href({ page: 'dialogs', bot, user, mode: m }), true);

  return (
    <div class="dialogs">
      <section class="list" aria-labelledby="dialogs-h">
        <h1 id="dialogs-h">Dialogs</h1>
        <div
          class="filter"
          role="radiogroup"
          aria-label="Show dialogs"
          onKeyDown={(e) => {
            // A radio group moves with the arrow keys (one tab stop for the group).
            const step = e.key === 'ArrowRight' || e.key === 'ArrowDown' ? 1 : e.key === 'ArrowLeft' || e.key === 'ArrowUp' ? -1 : 0;
            if (!step) return;
            e.preventDefault();
            const next = MODES[(MODES.indexOf(mode) + step + MODES.length) % MODES.length] ?? 'all';
            choose(next);
            (e.currentTarget.querySelector(`[data-filter="${next}"]`) as HTMLElement | null)?.focus();
          }}
        >
          {MODES.map((m) => (
            <button
              type="button"
              role="radio"
              data-filter={m}
              aria-checked={mode === m}
              tabIndex={mode === m ? 0 : -1}
              class={mode === m ? 'on' : ''}
              onClick={() => choose(m)}
            >
              {{ all: 'All', auto: 'Auto', manual: 'Manual' }[m]}
            </button>
          ))}
        </div>
        <ErrorLine error={error} />
        <ul>
          {shown.map((d) => (
            <li key={d.user.id} data-user={d.user.id} data-handoff={d.handoff?.at} class={d.user.id === user ? 'open' : ''}>
              <Link href={href({ page: 'dialogs', bot, user: d.user.id, mode })} aria-current={d.user.id === user ? 'true' : undefined}>
                <Avatar user={d.user} />
                <span class="body">
                  <span class="line">
                    <span class="name">{displayName(d.user)}</span>
                    <ProviderIcon provider={d.user.provider} />
                    {d.handoff && <HandRaised />}
                    {d.mode === 'manual' && <Headphones />}
                    <time class="muted" dateTime={d.last ?? undefined}>
                      {formatWhen(d.last, tz)}
                    </time>
                  </span>
                  <span class="preview">{previewText(d)}</span>
                </span>
              </Link>
            </li>
          ))}
        </ul>
        {shown.length === 0 && !older.loading && <p class="muted">{mode === 'all' ? 'No dialogs yet.' : `No dialogs in ${mode === 'auto' ? 'Auto' : 'Manual'} mode.`}</p>}
        {older.next && (
          <button type="button" disabled={older.loading} onClick={() => load(older.next)}>
            Older dialogs
          </button>
        )}
      </section>
      <section class="view" aria-label="Dialog">
        {user === null ? <p class="muted pad">Choose a dialog to follow it live.</p> : <DialogPane key={user} bot={bot} user={user} tz={tz} />}
      </section>
    </div>
  );
}

function previewText(d: DialogItem): string {
  const p = d.preview;
  if (!p) return '';
  const arrow = p.direction === 'out' ? '→ ' : '';
  if (p.text) return arrow + p.text;
  if (p.attachments) return arrow + plural(p.attachments, 'attachment');
  return '';
}

function DialogPane({ bot, user, tz }: { bot: string; user: string; tz: string }) {
  const [live, snapshots] = useTopic(`bot/${bot}/dialog/${user}`, dialogReducer);
  // Older messages read on scroll, kept beside the live view, for the snapshot they
  // were read after: a fresh snapshot (after a reconnect) starts them over, or the
  // messages between the two would be missing without a sign.
  const [read, setOlder] = useState<{ messages: Message[]; next: string | null | undefined; snapshot: number }>({ messages: [], next: undefined, snapshot: 0 });
  const older = read.snapshot === snapshots ? read : { messages: [], next: undefined, snapshot: snapshots };
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const box = useRef<HTMLOListElement>(null);
  const atBottom = useRef(true);
  const keep = useRef<number | null>(null);
  const snapshotNow = useRef(snapshots);
  snapshotNow.current = snapshots;

  const view: DialogView | null = live && withOlder(live, older.messages, older.next === undefined ? live.next : older.next);
  const dialog = view?.dialog;
  const name = dialog ? displayName(dialog.user) : user;

  // Leaving a dialog in Manual mode (another dialog, another page): a reminder, for
  // those who may hand it back. Opening it again clears the reminder.
  const leaving = useRef({ manual: false, name });
  leaving.current = { manual: dialog?.mode === 'manual', name };
  useEffect(() => {
    const left = leftInManual.value;
    if (left && left.bot === bot && left.user === user) leftInManual.value = null;
    return () => {
      const role = session.value?.role;
      if (leaving.current.manual && (role === 'operator' || role === 'admin')) {
        leftInManual.value = { bot, user, name: leaving.current.name };
      }
    };
  }, [bot, user]);

  const loadOlder = () => {
    if (!view?.next || loading) return;
    setLoading(true);
    const el = box.current;
    keep.current = el ? el.scrollHeight - el.scrollTop : null;
    const snapshot = snapshots;
    get<HistoryAnswer>(`/api/v1/bots/${encodeURIComponent(bot)}/dialogs/${encodeURIComponent(user)}/messages`, { before: view.next, limit: 50 })
      .then((a) => {
        if (a.items.length === 0) keep.current = null;
        // Read before a fresh snapshot came: it may not meet the new one's oldest message.
        if (snapshot !== snapshotNow.current) return;
        setOlder((o) => {
          const base = o.snapshot === snapshot ? o : { messages: [], snapshot };
          return { messages: [...base.messages, ...a.items], next: a.next ?? null, snapshot };
        });
        setError(null);
      })
      .catch((e) => {
        keep.current = null;
        setError(e);
      })
      .finally(() => setLoading(false));
  };

  // New messages keep the view at the bottom when it was there; older ones keep what
  // was on screen in place.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (keep.current !== null) {
      el.scrollTop = el.scrollHeight - keep.current;
      keep.current = null;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
  }, [view?.messages.length]);

  if (view === null) return <p class="muted pad">Loading the dialog…</p>;
  return (
    <div class="dialog">
      <header>
        {dialog && <Avatar user={dialog.user} size={40} />}
        <div>
          <h2>{name}</h2>
          <p class="muted">
            <ProviderIcon provider={dialog?.user.provider} /> {dialog ? `${plural(dialog.messages, 'message')} · ${plural(dialog.sessions, 'session')}` : 'No messages yet'}
          </p>
        </div>
        {dialog?.handoff && <HandoffFlag handoff={dialog.handoff} />}
        <span class={`mode mode-${dialog?.mode ?? 'auto'}`} data-mode={dialog?.mode ?? 'auto'}>
          {dialog?.mode === 'manual' ? 'Manual: an operator answers' : 'Auto: the bot answers'}
        </span>
        {dialog && <ModeToggle bot={bot} user={user} mode={dialog.mode} />}
      </header>
      <ol
        class="messages"
        ref={box}
        tabIndex={0}
        aria-label={`Messages with ${name}`}
        onScroll={(e) => {
          const el = e.currentTarget;
          atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
          // After a failed read, only the button tries again (not every scroll).
          if (el.scrollTop < 60 && !error) loadOlder();
        }}
      >
        {view.next && (
          <li class="older">
            <button type="button" disabled={loading} onClick={loadOlder}>
              {loading ? 'Loading…' : 'Older messages'}
            </button>
          </li>
        )}
        {view.messages.map((m) => (
          <MessageItem key={m.id} m={m} name={name} tz={tz} />
        ))}
      </ol>
      <ErrorLine error={error} />
      {/* What an operator sends shows at the bottom, even when they had scrolled up. */}
      {dialog && <Reply bot={bot} user={user} name={name} mode={dialog.mode} onSent={() => (atBottom.current = true)} />}
    </div>
  );
}

/** The dialog waits for a human, and why (what the user wrote, or the bot's reason):
 *  until an operator takes it over. */
function HandoffFlag({ handoff }: { handoff: HandoffView }) {
  return (
    <p class="handoff-flag" data-handoff={handoff.at}>
      <HandRaised label={null} /> {handoff.by === 'bot' ? 'The bot hands off to a human' : 'Asks for a human'}
      {handoff.reason ? `: ${handoff.reason}` : ''}
    </p>
  );
}

/** Writing to the user, for operators and admins (viewers see nothing of it): in Manual
 *  mode only, since in Auto the bot answers (and the server refuses an operator's
 *  message). */
function Reply({ bot, user, name, mode, onSent }: { bot: string; user: string; name: string; mode: string; onSent: () => void }) {
  // Kept here, not in the composer, so it outlives a switch to Auto and back.
  const [draft, setDraft] = useState('');
  const role = session.value?.role;
  if (role !== 'operator' && role !== 'admin') return null;
  if (mode !== 'manual') {
    return <p class="compose-hint muted">The bot answers in Auto mode. To write to {name} yourself, take the dialog over first (Take over, above).</p>;
  }
  return <Composer bot={bot} user={user} name={name} text={draft} setText={setDraft} onSent={onSent} />;
}

/** The headphones toggle (struck out = Auto), for operators and admins: the switch is
 *  shown when the dialog topic brings it back, so every dashboard agrees. */
function ModeToggle({ bot, user, mode }: { bot: string; user: string; mode: string }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const role = session.value?.role;
  const manual = mode === 'manual';
  if (role !== 'operator' && role !== 'admin') {
    return manual ? <Headphones /> : <Headphones off label="Auto mode: the bot answers" />;
  }
  const toggle = async () => {
    setBusy(true);
    setError(null);
    try {
      await switchMode(bot, user, manual ? 'auto' : 'manual');
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" class="mode-toggle" aria-pressed={manual} disabled={busy} onClick={() => void toggle()} title={manual ? 'Hand the dialog back to the bot' : 'Take the dialog over: the bot stops answering'}>
        <Headphones off={!manual} label={manual ? 'Manual mode' : 'Auto mode'} /> {manual ? 'Hand back to the bot' : 'Take over'}
      </button>
      <ErrorLine error={error} />
    </>
  );
}

function who(m: Message, name: string): string {
  if (m.direction !== 'out') return name;
  // A dashboard user's messages say `user:{name}`: the name is who they are.
  if (m.sender?.kind === 'operator') return m.sender.id ? `Operator ${m.sender.id.replace(/^user:/, '')}` : 'Operator';
  return 'Bot';
}

function MessageItem({ m, name, tz }: { m: Message; name: string; tz: string }) {
  const side = m.direction === 'out' ? (m.sender?.kind === 'operator' ? 'operator' : 'bot') : 'user';
  const delivery = m.delivery ?? null;
  return (
    <li class={`message ${side}`} data-id={m.id} data-delivery={delivery?.state}>
      <div class="meta">
        <span class="from">{who(m, name)}</span>
        <time dateTime={m.ts}>{formatWhen(m.ts, tz)}</time>
        {(delivery?.state === 'pending' || delivery?.state === 'sent') && <DeliveryMark state={delivery.state} />}
      </div>
      {m.text && <p class="text">{m.text}</p>}
      {m.attachments.map((a) => (
        <AttachmentView a={a} />
      ))}
      {delivery?.state === 'failed' && <Undelivered delivery={delivery} />}
    </li>
  );
}

/** An operator message on its way (a clock) or handed to the user's channel (a check). */
function DeliveryMark({ state }: { state: 'pending' | 'sent' }) {
  const label = state === 'pending' ? 'Sending' : 'Sent';
  return (
    <svg class={`delivery ${state}`} viewBox="0 0 16 16" width="14" height="14" role="img" aria-label={label}>
      <title>{label}</title>
      {state === 'pending' ? (
        <g fill="none" stroke="currentColor" stroke-width="1.6" stroke-linecap="round">
          <circle cx="8" cy="8" r="6.2" />
          <path d="M8 4.5V8l2.4 1.6" />
        </g>
      ) : (
        <path d="M2.5 8.5l3.5 3.5 7.5-8" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round" stroke-linejoin="round" />
      )}
    </svg>
  );
}

/** A message that did not reach the user, and why, as text (the operator acts on it:
 *  sets a webhook, sends again). */
function Undelivered({ delivery }: { delivery: Delivery }) {
  return (
    <p class="delivery-failed">
      <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true">
        <path d="M8 1.5l7 13H1z" fill="currentColor" />
        <path d="M8 6v4M8 12v.5" stroke="#fff" stroke-width="1.6" stroke-linecap="round" />
      </svg>{' '}
      Not delivered{delivery.reason ? `: ${delivery.reason}` : ''}
    </p>
  );
}

function AttachmentView({ a }: { a: Attachment }) {
  if (a.type === 'card') {
    const image = safeUrl(a.image);
    return (
      <div class="card-att">
        {image && <img src={image} alt="" referrerpolicy="no-referrer" />}
        <strong>{a.title}</strong>
        {a.subtitle && <span class="muted">{a.subtitle}</span>}
        {a.buttons && a.buttons.length > 0 && (
          <ul class="buttons">
            {a.buttons.map((b) => {
              const link = safeUrl(b.url);
              return (
                <li title={b.payload ?? undefined}>
                  {link ? (
                    <a href={link} target="_blank" rel="noopener noreferrer">
                      {b.title}
                    </a>
                  ) : (
                    b.title
                  )}
                </li>
              );
            })}
          </ul>
        )}
      </div>
    );
  }
  const url = safeUrl(a.url);
  const label = a.name || (url ? lastSegment(url) : '') || a.type;
  if (a.type === 'image' && url) {
    return (
      <a class="image-att" href={url} target="_blank" rel="noopener noreferrer">
        <img src={url} alt={label} referrerpolicy="no-referrer" loading="lazy" />
      </a>
    );
  }
  const detail = [a.mime, formatBytes(a.size)].filter(Boolean).join(', ');
  return (
    <div class="file-att">
      <span aria-hidden="true">{{ file: '📄', image: '🖼', audio: '🎵', video: '🎬' }[a.type]}</span>{' '}
      {url ? (
        <a href={url} target="_blank" rel="noopener noreferrer" download={a.name ?? ''}>
          {label}
        </a>
      ) : (
        <span>{label} (unsafe address not linked)</span>
      )}{' '}
      {detail && <span class="muted">({detail})</span>}
    </div>
  );
}

function lastSegment(url: string): string {
  const last = new URL(url).pathname.split('/').pop() ?? '';
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}
