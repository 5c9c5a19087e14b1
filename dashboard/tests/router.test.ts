import { describe, expect, it } from 'vitest';
import { href, parse, type Route } from '../src/router';

describe('router', () => {
  it('reads every page from its address and writes it back', () => {
    const routes: Route[] = [
      { page: 'login' },
      { page: 'bots' },
      { page: 'overview', bot: 'shop' },
      { page: 'board', bot: 'shop' },
      { page: 'dialogs', bot: 'shop', user: null },
      { page: 'dialogs', bot: 'shop', user: 'tg/55 32?x' },
      { page: 'statistics', bot: 'shop', param: 'dashboard' },
      { page: 'statistics', bot: 'shop', param: 'sessions' },
    ];
    for (const r of routes) expect(parse(href(r))).toEqual(r);
  });
  it('finds no page at unknown addresses', () => {
    expect(parse('/bots/shop/nope')).toEqual({ page: 'missing' });
    expect(parse('/bots/shop/statistics/nope')).toEqual({ page: 'missing' });
    expect(parse('/elsewhere')).toEqual({ page: 'missing' });
  });
});
