import type { ComponentChildren } from 'preact';
// Small pieces shared by the pages. Every string from a chat user goes in as a text
// child or a checked attribute: Preact sets it as text, never as HTML.

import { useState } from 'preact/hooks';
import { displayName, initials, safeUrl } from '../format';
import { navigate } from '../router';
import { CLEAR_COMMAND } from '../live/dataLoss';
import { live } from '../state';

export function Avatar({ user, size = 36 }: { user: { id: string; name?: string | null; avatar?: string | null }; size?: number }) {
  // The address that failed to load (a new address is tried again).
  const [broken, setBroken] = useState<string | null>(null);
  const src = safeUrl(user.avatar);
  const name = displayName(user);
  if (src && src !== broken) {
    return <img class="avatar" src={src} alt="" width={size} height={size} referrerpolicy="no-referrer" onError={() => setBroken(src)} />;
  }
  return (
    <span class="avatar initials" style={{ width: size + 'px', height: size + 'px' }} aria-hidden="true">
      {initials(name)}
    </span>
  );
}

/** Known providers: their name and a two-letter mark. */
const PROVIDERS: Record<string, [string, string]> = {
  telegram: ['Telegram', 'TG'],
  messenger: ['Messenger', 'FB'],
  viber: ['Viber', 'VB'],
  slack: ['Slack', 'SL'],
  whatsapp: ['WhatsApp', 'WA'],
  webchat: ['Web chat', 'WC'],
  web: ['Web chat', 'WC'],
};

/** A provider's name for people (`webchat`: Web chat). */
export function providerName(provider: string): string {
  return PROVIDERS[provider]?.[0] ?? provider;
}

/** The provider as a small badge: its initials in its colour, its name as the label. */
export function ProviderIcon({ provider }: { provider?: string | null }) {
  if (!provider) return null;
  const [name, mark] = PROVIDERS[provider] ?? [provider, provider.slice(0, 2).toUpperCase()];
  const known = provider in PROVIDERS ? provider : 'other';
  return (
    <span class={`provider provider-${known}`} title={name} role="img" aria-label={name}>
      {mark}
    </span>
  );
}

/** Headphones: this dialog is in Manual mode (an operator answers); struck out
 *  (`off`): Auto. */
export function Headphones({ label = 'Manual mode: an operator answers', off = false }: { label?: string; off?: boolean }) {
  return (
    <svg class={off ? 'headphones off' : 'headphones'} viewBox="0 0 24 24" width="18" height="18" role="img" aria-label={label}>
      <title>{label}</title>
      <path
        fill="currentColor"
        d="M12 3a9 9 0 0 0-9 9v6a3 3 0 0 0 3 3h2v-8H5v-1a7 7 0 0 1 14 0v1h-3v8h2a3 3 0 0 0 3-3v-6a9 9 0 0 0-9-9z"
      />
      {off && <path d="M3 3 21 21" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" />}
    </svg>
  );
}

/** A raised hand: this dialog's user asked for a human (or the bot handed it off) and
 *  no operator has taken it over yet. `label` null: beside a text that says so. */
export function HandRaised({ label = 'Asks for a human' }: { label?: string | null }) {
  return (
    <svg
      class="hand-raised"
      viewBox="0 0 24 24"
      width="18"
      height="18"
      role={label !== null ? 'img' : undefined}
      aria-label={label ?? undefined}
      aria-hidden={label === null ? 'true' : undefined}
    >
      {label !== null && <title>{label}</title>}
      <g fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">
        <path d="M8 13V5.5a1.5 1.5 0 0 1 3 0V11" />
        <path d="M11 11V3.5a1.5 1.5 0 0 1 3 0V11" />
        <path d="M14 11V5a1.5 1.5 0 0 1 3 0v6" />
        <path d="M17 11V8a1.5 1.5 0 0 1 3 0v6.5a7.5 7.5 0 0 1-7.5 7.5h-1a6 6 0 0 1-4.7-2.3L3.6 16a1.6 1.6 0 0 1 2.5-2L8 16" />
      </g>
    </svg>
  );
}

const STATES = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
} as const;

/** The live connection's state, announced to screen readers when it changes. */
export function ConnectionBadge() {
  const state = live.state.value;
  return (
    <span class={`connection connection-${state}`} role="status" aria-live="polite" data-state={state}>
      <span class="dot" aria-hidden="true" />
      {STATES[state]}
    </span>
  );
}

/** The storage lost data behind the server's back: said on every page of a bot until
 *  an operator clears it (the live snapshots carry it; gone with the next one that
 *  says null). Its text is `dataLossText`'s. */
export function DataLossBanner() {
  const loss = live.dataLoss.value;
  if (!loss) return null;
  return (
    <div class="notice data-loss" role="alert" data-since={loss.at}>
      <strong>Storage lost data:</strong> {loss.reason}. Figures may miss events; an operator runs <code>{CLEAR_COMMAND}</code>.
    </div>
  );
}

export function ErrorLine({ error }: { error: unknown }) {
  if (!error) return null;
  const text = error instanceof Error ? error.message : String(error);
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}

/** A link inside the dashboard: followed without a reload (a modified click, a middle
 *  click or "open in new tab" still work as for any link). */
interface LinkProps {
  href: string;
  children?: ComponentChildren;
  class?: string;
  'aria-current'?: 'page' | 'true';
  'aria-label'?: string;
}

export function Link({ href, children, ...rest }: LinkProps) {
  return (
    <a
      {...rest}
      href={href}
      onClick={(e) => {
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href);
      }}
    >
      {children}
    </a>
  );
}
