// The dashboard: checks the session, then shows the page the address names.

import { render } from 'preact';
import { useEffect } from 'preact/hooks';
import { Link } from './components/bits';
import { Shell } from './components/Shell';
import { AudiencePage } from './pages/Audience';
import { BoardPage } from './pages/Board';
import { BroadcastsPage } from './pages/Broadcasts';
import { DialogsPage } from './pages/Dialogs';
import { LoginPage } from './pages/Login';
import { OverviewPage } from './pages/Overview';
import { SettingsPage } from './pages/Settings';
import { StatisticsPage } from './pages/Statistics';
import { href, navigate, route } from './router';
import { bots, checkSession, refreshBots, session } from './state';
import './styles.css';

function BotsPage() {
  const list = bots.value;
  useEffect(() => {
    // One bot: straight to it.
    if (list.length === 1 && list[0]) navigate(href({ page: 'overview', bot: list[0].id }), true);
  }, [list]);
  // None yet: look again every few seconds, so the first bot shows up by itself.
  useEffect(() => {
    if (list.length) return;
    const timer = setInterval(() => void refreshBots().catch(() => {}), 5000);
    return () => clearInterval(timer);
  }, [list.length]);
  return (
    <Shell bot={null}>
      <h1>Bots</h1>
      {list.length === 0 ? (
        <p class="muted">No bot has sent an event yet. Bots appear here with their first event (POST /api/v1/events).</p>
      ) : (
        <ul class="bots">
          {list.map((b) => (
            <li>
              <Link href={href({ page: 'overview', bot: b.id })}>{b.id}</Link>
            </li>
          ))}
        </ul>
      )}
    </Shell>
  );
}

function App() {
  const r = route.value;
  const s = session.value;
  useEffect(() => {
    const titles = { login: 'Log in', bots: 'Bots', overview: 'Overview', board: 'Wall board', dialogs: 'Dialogs', audience: 'Audience', broadcasts: 'Broadcasts', statistics: 'Statistics', settings: 'Settings', missing: 'Not found' };
    document.title = `${titles[r.page]}${'bot' in r ? ' · ' + r.bot : ''} · botwatch`;
  }, [r]);
  if (s === undefined) return <p class="muted pad">Loading…</p>;
  if (s === null || r.page === 'login') {
    if (s !== null && r.page === 'login') {
      navigate('/', true);
      return null;
    }
    return <LoginPage />;
  }
  switch (r.page) {
    case 'bots':
      return <BotsPage />;
    case 'board':
      return <BoardPage key={r.bot} bot={r.bot} />;
    case 'overview':
      return (
        <Shell bot={r.bot}>
          <OverviewPage key={r.bot} bot={r.bot} />
        </Shell>
      );
    case 'dialogs':
      return (
        <Shell bot={r.bot}>
          <DialogsPage key={r.bot} bot={r.bot} user={r.user} mode={r.mode} />
        </Shell>
      );
    case 'audience':
      return (
        <Shell bot={r.bot}>
          <AudiencePage key={r.bot} bot={r.bot} />
        </Shell>
      );
    case 'broadcasts':
      return (
        <Shell bot={r.bot}>
          <BroadcastsPage key={r.bot} bot={r.bot} />
        </Shell>
      );
    case 'statistics':
      return (
        <Shell bot={r.bot}>
          <StatisticsPage key={r.bot} bot={r.bot} param={r.param} />
        </Shell>
      );
    case 'settings':
      return (
        <Shell bot={r.bot}>
          <SettingsPage key={r.bot} bot={r.bot} />
        </Shell>
      );
    case 'missing':
      return (
        <Shell bot={null}>
          <h1>Not found</h1>
          <p>
            No page has this address. <Link href="/">See the bots</Link>.
          </p>
        </Shell>
      );
  }
}

const root = document.getElementById('app');
if (root) {
  render(<App />, root);
  void checkSession();
}
