// The frame of every page but the login and the wall board: the bot picker, the
// navigation, the connection state and the signed-in user.

import type { ComponentChildren } from 'preact';
import { href, navigate, route } from '../router';
import { useState } from 'preact/hooks';
import type { DialogItem } from '../api/types';
import { displayName } from '../format';
import { alertsReducer } from '../live/reducers';
import { bots, leftInManual, logOut, notice, refreshBots, session, switchMode, useTopic } from '../state';
import { ConnectionBadge, DataLossBanner, ErrorLine, HandRaised, Link } from './bits';

export function Shell({ bot, children }: { bot: string | null; children: ComponentChildren }) {
  const r = route.value;
  const current = (page: string) => (r.page === page ? 'page' : undefined);
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link class="brand" href="/">
          botwatch
        </Link>
        <label class="picker">
          <span class="sr-only">Bot</span>
          <select
            value={bot ?? ''}
            onFocus={() => void refreshBots().catch(() => {})}
            onChange={(e) => {
              const next = (e.target as HTMLSelectElement).value;
              if (!next) return;
              // The same page of the other bot.
              const same = r.page === 'overview' || r.page === 'board' || r.page === 'statistics' || r.page === 'dialogs' || r.page === 'audience' || r.page === 'broadcasts' || r.page === 'settings';
              navigate(same ? href({ ...r, bot: next, ...(r.page === 'dialogs' ? { user: null } : {}) } as typeof r) : href({ page: 'overview', bot: next }));
            }}
          >
            {bot === null && <option value="">Choose a bot…</option>}
            {bots.value.map((b) => (
              <option value={b.id}>{b.id}</option>
            ))}
          </select>
        </label>
        {bot !== null && (
          <nav aria-label="Pages">
            <Link href={href({ page: 'overview', bot })} aria-current={current('overview')}>
              Overview
            </Link>
            <Link href={href({ page: 'dialogs', bot, user: null, mode: 'all' })} aria-current={current('dialogs')}>
              Dialogs
            </Link>
            <Link href={href({ page: 'audience', bot })} aria-current={current('audience')}>
              Audience
            </Link>
            <Link href={href({ page: 'broadcasts', bot })} aria-current={current('broadcasts')}>
              Broadcasts
            </Link>
            <Link href={href({ page: 'statistics', bot, param: 'dashboard' })} aria-current={current('statistics')}>
              Statistics
            </Link>
            <Link href={href({ page: 'board', bot })}>Wall board</Link>
            <Link href={href({ page: 'settings', bot })} aria-current={current('settings')}>
              Settings
            </Link>
          </nav>
        )}
        <span class="spacer" />
        <ConnectionBadge />
        <span class="who">
          {session.value?.user ?? 'token'} <span class="role">({session.value?.role})</span>
        </span>
        <button type="button" class="link" onClick={() => void logOut()}>
          Log out
        </button>
      </header>
      {bot !== null && <DataLossBanner />}
      <ManualReminder />
      {bot !== null && <WaitingForHuman bot={bot} />}
      {notice.value && (
        <div class="notice" role="alert">
          {notice.value}{' '}
          <button type="button" class="link" onClick={() => (notice.value = null)}>
            Dismiss
          </button>
        </div>
      )}
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </div>
  );
}

/** The reminder of a dialog left in Manual mode, with the way to hand it back. */
function ManualReminder() {
  const left = leftInManual.value;
  const [error, setError] = useState<unknown>(null);
  if (!left) return null;
  return (
    <div class="notice reminder" role="alert">
      <strong>{left.name}</strong> is still in Manual mode: the bot will not answer them until the dialog is handed back.{' '}
      <Link href={href({ page: 'dialogs', bot: left.bot, user: left.user, mode: 'all' })}>Open the dialog</Link>{' '}
      <button
        type="button"
        onClick={() => {
          setError(null);
          switchMode(left.bot, left.user, 'auto').catch(setError);
        }}
      >
        Hand back to the bot
      </button>{' '}
      <button type="button" class="link" onClick={() => (leftInManual.value = null)}>
        Dismiss
      </button>
      <ErrorLine error={error} />
    </div>
  );
}

/** The dialogs of the bot waiting for a human (a user asked for one, or the bot handed
 *  the dialog off), live on every page of the bot and for every role: the latest
 *  request, the others on demand. An entry stays until an operator switches its
 *  dialog (taking it over answers it), so every dashboard shows the same list. */
function WaitingForHuman({ bot }: { bot: string }) {
  const [waiting] = useTopic(`bot/${bot}/alerts`, alertsReducer);
  const [latest, ...more] = waiting ?? [];
  if (!latest) return null;
  return (
    <section class="notice handoff" aria-label="Waiting for a human">
      {/* Announced when it appears and when a newer request takes its place. */}
      <p class="latest" role="alert" data-handoff-user={latest.user.id}>
        <HandRaised label={null} /> <HumanRequest bot={bot} dialog={latest} />
      </p>
      {more.length > 0 && (
        <details>
          <summary>+{more.length} more</summary>
          <ul>
            {more.map((d) => (
              <li key={d.user.id} data-handoff-user={d.user.id}>
                <HumanRequest bot={bot} dialog={d} />
              </li>
            ))}
          </ul>
        </details>
      )}
    </section>
  );
}

/** "Олена asks for a human — “Покличте оператора” · Open" (what the user wrote), or
 *  "The bot hands Олена to a human — payment question · Open" (the bot's reason), as
 *  text. */
function HumanRequest({ bot, dialog }: { bot: string; dialog: DialogItem }) {
  const name = displayName(dialog.user);
  const reason = dialog.handoff?.reason;
  const byBot = dialog.handoff?.by === 'bot';
  return (
    <>
      {byBot ? (
        <>
          The bot hands <strong class="name">{name}</strong> to a human
        </>
      ) : (
        <>
          <strong class="name">{name}</strong> asks for a human
        </>
      )}
      {reason && byBot ? (
        <>
          {' — '}
          <span class="reason">{reason}</span>
        </>
      ) : reason ? (
        <>
          {' — '}
          <span class="reason">“{reason}”</span>
        </>
      ) : null}
      {' · '}
      <Link href={href({ page: 'dialogs', bot, user: dialog.user.id, mode: 'all' })} aria-label={`Open the dialog with ${name}`}>
        Open
      </Link>
    </>
  );
}
