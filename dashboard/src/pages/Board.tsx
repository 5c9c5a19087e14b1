// The wall board: the main page's figures without the frame, large enough to read on
// a 1080p screen across a room. Live like the main page.

import { Avatar, ConnectionBadge, DataLossBanner, Link, ProviderIcon } from '../components/bits';
import { displayName, formatWhen } from '../format';
import { href } from '../router';
import { useZone } from '../state';
import { MessagesChart, TopMessages, UsersChart, knownUsers, todayOf, useNow, useOverview } from './Overview';

export function BoardPage({ bot }: { bot: string }) {
  const tz = useZone(bot);
  const overview = useOverview(bot);
  const days = overview?.days ?? [];
  const today = todayOf(days, tz, useNow(60_000));
  const figures: Array<[string, number]> = [
    ['Messages in today', today?.messages_in ?? 0],
    ['Messages out today', today?.messages_out ?? 0],
    ['Active users today', today?.users_active ?? 0],
    ['New users today', today?.users_new ?? 0],
    ['Users in all', knownUsers(days)],
  ];
  return (
    <div class="board">
      <header>
        <h1>{bot}</h1>
        <ConnectionBadge />
        <Link class="exit" href={href({ page: 'overview', bot })}>
          Leave the wall board
        </Link>
      </header>
      <DataLossBanner />
      <main id="main">
        <dl class="figures">
          {figures.map(([label, value]) => (
            <div>
              <dt>{label}</dt>
              <dd>{value.toLocaleString('en')}</dd>
            </div>
          ))}
        </dl>
        <div class="grid two">
          <MessagesChart days={days} tz={tz} height={260} />
          <UsersChart days={days} tz={tz} height={260} />
        </div>
        <div class="grid two">
          <section class="card" aria-labelledby="latest-h">
            <h2 id="latest-h">Latest users</h2>
            <ul class="latest">
              {(overview?.users ?? []).slice(0, 8).map((u) => (
                <li key={u.id} data-user={u.id}>
                  <Avatar user={u} size={40} />
                  <span class="name">{displayName(u)}</span>
                  <ProviderIcon provider={u.provider} />
                  <span class="muted">{formatWhen(u.last, tz)}</span>
                </li>
              ))}
            </ul>
          </section>
          <TopMessages items={overview?.top ?? []} limit={8} />
        </div>
      </main>
    </div>
  );
}
