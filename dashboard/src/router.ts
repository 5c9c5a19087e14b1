// The dashboard's pages and their addresses. The server answers every such path with
// index.html; this reads it.

import { signal } from '@preact/signals';

export type StatsParam = 'dashboard' | 'messages' | 'users' | 'sessions';
export type ModeFilter = 'all' | 'auto' | 'manual';

export type Route =
  | { page: 'login' }
  | { page: 'bots' }
  | { page: 'overview'; bot: string }
  | { page: 'board'; bot: string }
  | { page: 'dialogs'; bot: string; user: string | null; mode: ModeFilter }
  | { page: 'audience'; bot: string }
  | { page: 'broadcasts'; bot: string }
  | { page: 'statistics'; bot: string; param: StatsParam }
  | { page: 'settings'; bot: string }
  | { page: 'missing' };

const PARAMS: StatsParam[] = ['dashboard', 'messages', 'users', 'sessions'];

/** The page an address names (`search`: its `?…`, which holds the dialogs filter). */
export function parse(path: string, search = ''): Route {
  const parts = path.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts.length === 0) return { page: 'bots' };
  if (parts[0] === 'login' && parts.length === 1) return { page: 'login' };
  if (parts[0] !== 'bots' || !parts[1]) return { page: 'missing' };
  const bot = parts[1];
  const [, , what, extra, ...rest] = parts;
  if (rest.length) return { page: 'missing' };
  if (what === undefined) return { page: 'overview', bot };
  if (what === 'board' && extra === undefined) return { page: 'board', bot };
  if (what === 'audience' && extra === undefined) return { page: 'audience', bot };
  if (what === 'broadcasts' && extra === undefined) return { page: 'broadcasts', bot };
  if (what === 'settings' && extra === undefined) return { page: 'settings', bot };
  if (what === 'dialogs') {
    const m = new URLSearchParams(search).get('mode');
    return { page: 'dialogs', bot, user: extra ?? null, mode: m === 'auto' || m === 'manual' ? m : 'all' };
  }
  if (what === 'statistics') {
    const param = (extra ?? 'dashboard') as StatsParam;
    return PARAMS.includes(param) ? { page: 'statistics', bot, param } : { page: 'missing' };
  }
  return { page: 'missing' };
}

export function href(route: Route): string {
  const b = (bot: string) => '/bots/' + encodeURIComponent(bot);
  switch (route.page) {
    case 'login':
      return '/login';
    case 'bots':
    case 'missing':
      return '/';
    case 'overview':
      return b(route.bot);
    case 'board':
      return b(route.bot) + '/board';
    case 'audience':
      return b(route.bot) + '/audience';
    case 'broadcasts':
      return b(route.bot) + '/broadcasts';
    case 'settings':
      return b(route.bot) + '/settings';
    case 'dialogs':
      return (
        b(route.bot) + '/dialogs' + (route.user === null ? '' : '/' + encodeURIComponent(route.user)) + (route.mode === 'all' ? '' : '?mode=' + route.mode)
      );
    case 'statistics':
      return b(route.bot) + '/statistics' + (route.param === 'dashboard' ? '' : '/' + route.param);
  }
}

export const route = signal<Route>(typeof location === 'undefined' ? { page: 'bots' } : parse(location.pathname, location.search));

export function navigate(to: string, replace = false): void {
  if (to === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  route.value = parse(location.pathname, location.search);
}

if (typeof window !== 'undefined') {
  window.addEventListener('popstate', () => {
    route.value = parse(location.pathname, location.search);
  });
}
