// What the whole tab shares: the session, the bots, the live connection.

import { signal } from '@preact/signals';
import { useEffect, useRef, useState } from 'preact/hooks';
import { HttpError, get, request, setCsrf, whenUnauthorized } from './api/http';
import type { BotItem, Card, Message, SessionInfo, SettingsDoc } from './api/types';
import { throttle } from './audience';
import { LiveClient, type Socket } from './live/client';
import type { Reducer } from './live/topic';
import { navigate, route } from './router';

/** The signed-in user; undefined while the first check runs, null when signed out. */
export const session = signal<SessionInfo | null | undefined>(undefined);
export const bots = signal<BotItem[]>([]);
/** A message for the whole page (a topic refused, the server unreachable). */
export const notice = signal<string | null>(null);

/** A dialog an operator left while it was in Manual mode: the bot stays silent for that
 *  user until someone hands it back, so the page reminds them. */
export const leftInManual = signal<{ bot: string; user: string; name: string } | null>(null);

/** Switches a dialog's mode (operators and admins). */
export async function switchMode(bot: string, user: string, mode: 'auto' | 'manual'): Promise<void> {
  await request('PUT', `/api/v1/bots/${encodeURIComponent(bot)}/dialogs/${encodeURIComponent(user)}/mode`, { mode });
  const left = leftInManual.value;
  if (left && left.bot === bot && left.user === user) leftInManual.value = null;
}

/** The largest file an operator may send (the server refuses more with 413: checked
 *  here first, so 20 MiB are not uploaded only to be refused). */
export const MAX_FILE_BYTES = 20 * 1024 * 1024;

/** What an operator sends: a text, a card, or a file (with the text as its caption). */
export type Outgoing = { text: string } | { card: Card } | { file: File; caption?: string };

/** Sends an operator message (operators and admins; the dialog must be in Manual
 *  mode). The dialog topic brings it back, pending, then sent or failed. */
export async function sendMessage(bot: string, user: string, what: Outgoing): Promise<Message> {
  const path = `/api/v1/bots/${encodeURIComponent(bot)}/dialogs/${encodeURIComponent(user)}/messages`;
  if (!('file' in what)) return request<Message>('POST', path, what);
  if (what.file.size > MAX_FILE_BYTES) throw new HttpError(413, 'too_large', `${what.file.name} is too large: a file may have at most 20 MiB`);
  const form = new FormData();
  if (what.caption) form.append('text', what.caption);
  form.append('file', what.file, what.file.name);
  return request<Message>('POST', path, form);
}

export const live = new LiveClient({
  connect: () => {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return new WebSocket(`${proto}//${location.host}/api/v1/live`) as unknown as Socket;
  },
  onSessionEnded: () => signedOut(),
  onTopicError: (topic, error) => {
    notice.value = `Live updates for ${topic || 'this page'} refused: ${error}`;
  },
});

function signedOut(): void {
  live.stop();
  leftInManual.value = null;
  setCsrf(null);
  session.value = null;
  if (route.value.page !== 'login') {
    const back = location.pathname + location.search;
    navigate('/login' + (back && back !== '/' ? '?next=' + encodeURIComponent(back) : ''), true);
  }
}
whenUnauthorized(signedOut);

async function signedIn(info: SessionInfo): Promise<void> {
  setCsrf(info.csrf ?? null);
  session.value = info;
  live.start();
  await refreshBots();
}

/** Reads the list of bots again (a bot appears with its first event). */
export async function refreshBots(): Promise<void> {
  bots.value = await get<BotItem[]>('/api/v1/bots');
}

/** At load: is there a session already? */
export async function checkSession(): Promise<void> {
  try {
    await signedIn(await get<SessionInfo>('/api/v1/session'));
  } catch {
    signedOut();
  }
}

export async function logIn(username: string, password: string): Promise<void> {
  await signedIn(await request<SessionInfo>('POST', '/api/v1/session', { username, password }));
}

export async function logOut(): Promise<void> {
  try {
    await request('DELETE', '/api/v1/session');
  } finally {
    signedOut();
  }
}

const zones = signal<Record<string, string>>({});

/** The bot's IANA time zone (UTC until its settings are read). */
export function useZone(bot: string): string {
  useEffect(() => {
    if (zones.value[bot]) return;
    get<SettingsDoc>(`/api/v1/bots/${encodeURIComponent(bot)}/settings`)
      .then((s) => {
        zones.value = { ...zones.value, [bot]: s.timezone || 'UTC' };
      })
      .catch(() => {});
  }, [bot]);
  return zones.value[bot] ?? 'UTC';
}

/** For components that read again while earlier reads may still be on their way:
 *  each call starts a request and returns whether that request is still the latest
 *  (an older answer that arrives last must not replace a newer one). */
export function useLatestRequest(): () => () => boolean {
  const latest = useRef(0);
  return () => {
    const mine = ++latest.current;
    return () => mine === latest.current;
  };
}

/** A live topic's state in a component (null until its snapshot arrives), and how
 *  many snapshots it has had (a fresh one replaced what the page had built on). */
export function useTopic<S>(name: string | null, reducer: Reducer<S>): [S | null, number] {
  const [state, setState] = useState<[S | null, number]>([null, 0]);
  useEffect(() => {
    setState([null, 0]);
    if (!name) return;
    return live.subscribe(name, reducer, (s, snapshots) => setState([s, snapshots]));
  }, [name]);
  return state;
}

/** Whether the signed-in user may change things (operators and admins; viewers read). */
export function canEdit(): boolean {
  const role = session.value?.role;
  return role === 'operator' || role === 'admin';
}

/** Calls `f` when a live topic sends a frame after its first (the page read its data
 *  already), at most once per `ms`: for pages that read again when the figures move. */
export function useLiveRefresh<S>(name: string, reducer: Reducer<S>, f: () => void, ms = 1000): void {
  const latest = useRef(f);
  latest.current = f;
  useEffect(() => {
    const t = throttle(() => latest.current(), ms);
    let frames = 0;
    const stop = live.subscribe(name, reducer, () => {
      if (++frames > 1) t.call();
    });
    return () => {
      stop();
      t.cancel();
    };
  }, [name, ms]);
}
