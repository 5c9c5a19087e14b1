// End-to-end tests of the dashboard: Debian's Chromium (playwright-core) against a real
// `botwatch serve` fed with events over HTTP, as a bot feeds it.
//
//   cd dashboard && node --test e2e/        (e2e/test.mjs loads this file: Node 20's
//                                            runner only picks up files named test.mjs,
//                                            *.test.mjs, …)
//   BOTWATCH_BIN=/path/to/botwatch  CHROMIUM=/path/to/chromium   to pick other binaries.
//
// The tests run in order and share one server, one browser and the tally of what was
// ingested (`ingested`): every figure a page must show is computed from that tally.

import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { UNREACHABLE, eventually, launchBrowser, openPage, textOf } from './browser.mjs';
import { startServer } from './server.mjs';

const BOT = 'shop';
const RUN = randomBytes(4).toString('hex');
let serial = 0;
/** A unique event id (unique across runs too, should a data folder ever be reused). */
const eventId = (tag) => `e2e-${RUN}-${++serial}-${tag}`;

const OLENA = { id: 'u-olena', name: 'Олена К.', avatar: 'https://example.invalid/avatars/olena.jpg' };
const TARAS = { id: 'u-taras', name: 'Тарас Шевчук' };
const JOHN = { id: 'u-john', name: 'John Smith' };
const PROVIDER = { [OLENA.id]: 'telegram', [TARAS.id]: 'viber', [JOHN.id]: 'webchat' };
const PROVIDER_NAME = { telegram: 'Telegram', viber: 'Viber', webchat: 'Web chat' };

const FILE = { type: 'file', url: 'https://example.com/a.pdf', name: 'invoice.pdf', mime: 'application/pdf', size: 48211 };
const CARD = { type: 'card', title: 'Order #12', subtitle: 'Shipped', buttons: [{ title: 'Track', payload: 'track:12' }] };

/** `n` increasing event times, all today (UTC, the bot's default zone), the last just
 *  before now, a millisecond apart: one session per user, a stable order. */
function stamps(n) {
  const now = Date.now();
  const dayStart = now - (now % 86_400_000);
  return Array.from({ length: n }, (_, i) => new Date(Math.max(dayStart + i, now - (n - i))).toISOString());
}

function message(user, direction, text, extra = {}) {
  return {
    id: eventId(direction),
    bot: BOT,
    type: 'message',
    direction,
    provider: PROVIDER[user.id] ?? 'telegram',
    user,
    ...(text === null ? {} : { text }),
    ...(direction === 'out' ? { sender: { kind: 'bot' } } : {}),
    ...extra,
  };
}

// ---------------------------------------------------------------------------------------
// The tally: every event the server accepted, and the figures they make.

/** Accepted message events, in the order of their event time. */
const ingested = [];
/** The latest name of each user (a later event may rename). */
const names = new Map();

async function ingestOk(events) {
  const list = Array.isArray(events) ? events : [events];
  const { status, body } = await server.ingest(list);
  assert.equal(status, 202, `ingest answered ${status}: ${JSON.stringify(body)}`);
  assert.equal(body.accepted, list.length, `ingest accepted ${body.accepted} of ${list.length}`);
  for (const e of list) {
    ingested.push(e);
    names.set(e.user.id, e.user.name);
  }
}

function messagesOf(userId) {
  return ingested.filter((e) => e.user.id === userId);
}

/** Users, latest activity first (what the users table and the dialogs list show). */
function usersByLast() {
  const last = new Map();
  ingested.forEach((e, i) => last.set(e.user.id, i));
  return [...last.entries()].sort((a, b) => b[1] - a[1]).map(([id]) => id);
}

/** Today's figures (everything is ingested today). Each user's messages lie within a
 *  few seconds, so each user with an inbound message has exactly one session. */
function today() {
  const inbound = ingested.filter((e) => e.direction === 'in');
  const users = new Set(ingested.map((e) => e.user.id));
  const active = new Set(inbound.map((e) => e.user.id));
  return { in: inbound.length, out: ingested.length - inbound.length, users: users.size, active: active.size, sessions: active.size };
}

/** Top messages as PRODUCT.md defines them: NFKC, lower case, trimmed, spaces collapsed. */
function topMessages() {
  const counts = new Map();
  for (const e of ingested) {
    if (e.direction !== 'in' || !e.text) continue;
    const t = e.text.normalize('NFKC').toLowerCase().trim().replace(/\s+/g, ' ');
    if (t) counts.set(t, (counts.get(t) ?? 0) + 1);
  }
  return counts;
}

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

// ---------------------------------------------------------------------------------------

let server;
let browser;

before(
  async () => {
    server = await startServer();
    browser = await launchBrowser();
    const t = stamps(8);
    const events = [
      message(OLENA, 'in', 'Where is my order?'),
      message(OLENA, 'out', 'Your order has shipped', { attachments: [FILE, CARD] }),
      message(OLENA, 'in', 'Thanks!'),
      message(TARAS, 'in', 'Hello'),
      message(TARAS, 'out', 'Hi! How can I help?'),
      message(TARAS, 'in', '  where is my   ORDER? '),
      message(TARAS, 'out', 'Let me check.'),
      message(JOHN, 'in', 'hello'),
    ].map((e, i) => ({ ...e, ts: t[i] }));
    await ingestOk(events);
  },
  { timeout: 60_000 },
);

after(async () => {
  await browser?.close().catch(() => {});
  await server?.stop();
});

const path = (page) => new URL(page.url()).pathname;
const live = (page) => page.locator('.connection[data-state="live"]').waitFor({ timeout: 10_000 });

// The login page's answers before a session exists: 401 is its normal "not signed in".
const SESSION_401 = [{ path: '/api/v1/session', status: 401 }];

// ---------------------------------------------------------------------------------------

test('1. log in: a wrong password is refused, the right one lands on the bot, live', { timeout: 30_000 }, async () => {
  const t = await openPage(browser, server, { loggedIn: false, allowFailedRequests: SESSION_401 });
  try {
    const { page } = t;
    await page.goto('/');
    await page.getByRole('button', { name: 'Log in' }).waitFor();
    assert.equal(path(page), '/login', 'signed out, / shows the login page at /login');

    await page.getByLabel('User name').fill(server.username);
    await page.getByLabel('Password').fill(server.password + '-wrong');
    await page.getByRole('button', { name: 'Log in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    assert.match(await textOf(alert), /Wrong user name or password/);
    assert.equal(path(page), '/login');
    assert.equal(await page.locator('tr[data-user]').count(), 0, 'no data shown after a wrong password');

    await page.getByLabel('Password').fill(server.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    // One bot: straight to its main page.
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}`, { timeout: 10_000 });
    await page.getByRole('heading', { level: 1, name: `${BOT} overview` }).waitFor();
    await live(page);
    assert.equal(await textOf(page.locator('.connection')), 'Live');
    assert.equal(await textOf(page.locator('header .who')), `${server.username} (viewer)`);
    await page.locator('tr[data-user]').first().waitFor();
    assert.equal(await page.getByRole('alert').count(), 0, 'the error is gone after a good login');
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

/** Rows of the users table: id, name, messages, last, sessions, chat link. */
function usersTableRows(page) {
  return page.locator('section.users tbody tr').evaluateAll((rows) =>
    rows.map((r) => ({
      id: r.getAttribute('data-user'),
      name: r.querySelector('.name')?.textContent ?? '',
      messages: r.cells[1]?.textContent ?? '',
      last: r.cells[2]?.textContent ?? '',
      sessions: r.cells[3]?.textContent ?? '',
      chat: r.querySelector('a.chat')?.getAttribute('href') ?? null,
      chatText: r.querySelector('a.chat')?.textContent ?? '',
    })),
  );
}

/** Rows of a "Top messages" table as [text, count]. */
function topRows(scope) {
  return scope.locator('table.top-list tbody tr').evaluateAll((rows) => rows.map((r) => [r.cells[0]?.textContent ?? '', Number(r.cells[1]?.textContent)]));
}

function assertTop(rows, what) {
  const expected = topMessages();
  assert.deepEqual(new Map(rows), expected, `${what}: top messages`);
  const counts = rows.map(([, c]) => c);
  assert.deepEqual(counts, [...counts].sort((a, b) => b - a), `${what}: most frequent first`);
}

/** The statistics table: header cells, body rows and the total row, as text. */
function statsTable(page) {
  return page.locator('table.figures-table').evaluate((t) => {
    const cells = (r) => [...r.cells].map((c) => (c.textContent ?? '').trim());
    return { head: cells(t.tHead.rows[0]), rows: [...t.tBodies[0].rows].map(cells), foot: cells(t.tFoot.rows[0]) };
  });
}

/** Today's day label as the statistics table writes it (en-GB, the bot's zone UTC). */
function todayLabel(page) {
  return page.evaluate(() => new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' }).format(new Date()));
}

/** What each statistics page's table shows for today, from the tally. */
function expectedColumns(param) {
  const f = today();
  const all = {
    Incoming: f.in,
    Outgoing: f.out,
    'All messages': f.in + f.out,
    'Existing users': 0,
    'New users': f.users,
    'Unique users': f.active,
    Sessions: f.sessions,
  };
  const columns = {
    dashboard: ['Incoming', 'Outgoing', 'Existing users', 'New users', 'Unique users'],
    messages: ['Incoming', 'Outgoing', 'All messages'],
    users: ['New users', 'Existing users', 'Unique users'],
    sessions: ['Sessions'],
  }[param];
  return { columns, values: columns.map((c) => String(all[c])) };
}

/** A statistics page over the default range (7 days by day): seven rows, today last
 *  with exactly what was ingested, the six days before empty, the totals equal. */
async function checkStatistics(page, param, label) {
  const { columns, values } = expectedColumns(param);
  await eventually(`statistics/${param}: today's figures`, async () => {
    const table = await statsTable(page);
    assert.deepEqual(table.head, ['Date', ...columns]);
    assert.equal(table.rows.length, 7, 'seven days by default');
    assert.deepEqual(table.rows[6], [label, ...values], "today's row");
    for (const r of table.rows.slice(0, 6)) assert.deepEqual(r.slice(1), columns.map(() => '0'), `an earlier day (${r[0]}) is empty`);
    // Existing and unique users are not summed across buckets (a user counts once).
    assert.deepEqual(
      table.foot,
      ['Total', ...columns.map((c, i) => (c === 'Existing users' || c === 'Unique users' ? '' : values[i]))],
      'the total row',
    );
  });
  assert.equal(await page.getByRole('radio', { name: '7 days', exact: true }).isChecked(), true);
  assert.equal(await page.getByRole('radio', { name: 'Day', exact: true }).isChecked(), true);
  assert.match(await textOf(page.locator('.zone')), /Time zone: UTC · live/);
  const figures = page.locator('.statistics figure.chart');
  assert.ok((await figures.count()) >= 1, 'a chart');
  for (const fig of await figures.all()) {
    assert.ok((await textOf(fig.locator('figcaption'))).length > 0, 'each chart has a caption');
    assert.equal(await fig.locator('canvas').count() > 0, true, 'each chart is drawn');
  }
}

test('2. every page shows its real content, without errors', { timeout: 45_000 }, async () => {
  const t = await openPage(browser, server);
  try {
    const { page } = t;
    const f = today();
    const order = usersByLast();

    // --- main page
    await page.goto(`/bots/${BOT}`);
    await live(page);
    await page.getByRole('heading', { level: 1, name: `${BOT} overview` }).waitFor();
    await eventually('main page: the users table', async () => {
      const rows = await usersTableRows(page);
      assert.deepEqual(
        rows.map((r) => r.id),
        order,
        'every ingested user, latest activity first',
      );
      for (const r of rows) {
        assert.equal(r.name, names.get(r.id), `${r.id}: name`);
        assert.equal(r.messages, String(messagesOf(r.id).length), `${r.id}: messages (in + out)`);
        assert.equal(r.sessions, '1', `${r.id}: sessions`);
        assert.match(r.last, /^\d\d:\d\d$/, `${r.id}: last message time (today: HH:MM)`);
        assert.equal(r.chat, `/bots/${BOT}/dialogs/${r.id}`, `${r.id}: CHAT link`);
        assert.equal(r.chatText, 'CHAT');
      }
    });
    assert.equal(await textOf(page.locator('#users-h')), `Users ${f.users}`);
    assert.deepEqual(
      await page.locator('section.users thead th').allTextContents().then((a) => a.map((s) => s.replace(/[▲▼]/g, '').trim())),
      ['Name', 'Messages', 'Last', 'Sessions', 'Chat'],
    );
    // An avatar that does not load gives way to the initials.
    await eventually('main page: initials instead of a broken avatar', async () => {
      assert.equal(await textOf(page.locator(`tr[data-user="${OLENA.id}"] .avatar`)), 'ОК');
      assert.equal(await page.locator(`tr[data-user="${OLENA.id}"] img`).count(), 0);
    });
    assert.equal(await textOf(page.locator(`tr[data-user="${TARAS.id}"] .avatar`)), 'ТШ');
    assert.equal(await page.locator(`tr[data-user="${TARAS.id}"] [role="img"]`).getAttribute('aria-label'), 'Viber');
    assertTop(await topRows(page.locator('main')), 'main page');
    const charts = page.locator('main figure.chart');
    assert.deepEqual(await charts.locator('figcaption').allTextContents(), ['Messages by day: incoming and outgoing', 'Users by day: existing and new']);
    assert.match((await charts.nth(0).locator('[role="img"]').getAttribute('aria-label')) ?? '', new RegExp(`Totals: Incoming: ${f.in}, Outgoing: ${f.out}$`));
    assert.match((await charts.nth(1).locator('[role="img"]').getAttribute('aria-label')) ?? '', new RegExp(`Totals: Existing: 0, New: ${f.users}$`));
    assert.equal(await charts.nth(0).locator('canvas').count() > 0, true, 'the messages chart is drawn');
    assert.equal(await charts.nth(1).locator('canvas').count() > 0, true, 'the users chart is drawn');

    // --- wall board
    await page.goto(`/bots/${BOT}/board`);
    await live(page);
    await page.getByRole('heading', { level: 1, name: BOT }).waitFor();
    await eventually('board: the figures of today', async () => {
      const figures = await page.locator('.board dl.figures > div').evaluateAll((ds) => ds.map((d) => [d.querySelector('dt')?.textContent, d.querySelector('dd')?.textContent]));
      assert.deepEqual(figures, [
        ['Messages in today', String(f.in)],
        ['Messages out today', String(f.out)],
        ['Active users today', String(f.active)],
        ['New users today', String(f.users)],
        ['Users in all', String(f.users)],
      ]);
    });
    assert.deepEqual(await page.locator('.board .latest li').evaluateAll((ls) => ls.map((l) => [l.getAttribute('data-user'), l.querySelector('.name')?.textContent])), order.map((id) => [id, names.get(id)]));
    assertTop(await topRows(page.locator('.board')), 'board');
    assert.equal(await page.locator('.board figure.chart canvas').count() >= 2, true, 'the board draws both charts');
    assert.equal(await page.getByRole('link', { name: 'Leave the wall board' }).getAttribute('href'), `/bots/${BOT}`);

    // --- dialogs list
    await page.goto(`/bots/${BOT}/dialogs`);
    await live(page);
    await eventually('dialogs: the list', async () => {
      const items = await page.locator('section.list li[data-user]').evaluateAll((ls) =>
        ls.map((l) => ({ id: l.getAttribute('data-user'), name: l.querySelector('.name')?.textContent, preview: l.querySelector('.preview')?.textContent, href: l.querySelector('a')?.getAttribute('href') })),
      );
      assert.deepEqual(
        items,
        order.map((id) => {
          const last = messagesOf(id).at(-1);
          return { id, name: names.get(id), preview: (last.direction === 'out' ? '→ ' : '') + last.text, href: `/bots/${BOT}/dialogs/${id}` };
        }),
        'every dialog, latest first, with the last message as preview',
      );
    });
    assert.equal(await page.getByRole('radio', { name: 'All', exact: true }).getAttribute('aria-checked'), 'true');
    await page.getByText('Choose a dialog to follow it live.').waitFor();
    assert.equal(await page.locator('section.list svg.headphones').count(), 0, 'no dialog is in manual mode');

    // --- a dialog
    await page.goto(`/bots/${BOT}/dialogs/${TARAS.id}`);
    await live(page);
    await checkDialogView(page, TARAS);

    // --- statistics: the dashboard, then each parameter through the side navigation
    await page.goto(`/bots/${BOT}/statistics`);
    await live(page);
    await page.getByRole('heading', { level: 1, name: 'Statistics' }).waitFor();
    const label = await todayLabel(page);
    await checkStatistics(page, 'dashboard', label);
    assert.deepEqual(await page.locator('.statistics figcaption').allTextContents(), ['Messages: incoming and outgoing', 'Users: existing and new', 'Unique users']);

    for (const [param, link, title] of [
      ['messages', 'Messages', 'Messages'],
      ['users', 'Users', 'Users'],
      ['sessions', 'Sessions', 'Sessions'],
    ]) {
      await page.locator('nav.side').getByRole('link', { name: link }).click();
      await page.waitForURL((u) => u.pathname === `/bots/${BOT}/statistics/${param}`);
      await page.getByRole('heading', { level: 1, name: title }).waitFor();
      assert.equal(await page.locator('nav.side a[aria-current="page"]').textContent(), link);
      await checkStatistics(page, param, label);
      if (param === 'messages') {
        await eventually('statistics/messages: top messages', async () => assertTop(await topRows(page.locator('.statistics')), 'statistics/messages'));
        await page.locator('.statistics table.top-list').getByText('where is my order?', { exact: true }).waitFor();
      }
      assert.equal(await page.getByRole('button', { name: 'Export CSV' }).isEnabled(), true);
    }

    // Back to the dashboard: today by hour, then by day, and its CSV.
    await page.locator('nav.side').getByRole('link', { name: 'Dashboard' }).click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/statistics`);
    await checkStatistics(page, 'dashboard', label);
    // Today by hour: 24 rows whose totals are today's figures.
    await page.getByRole('radio', { name: 'Today', exact: true }).check();
    await page.getByRole('radio', { name: 'Hour', exact: true }).check();
    await eventually('statistics: today by hour', async () => {
      const table = await statsTable(page);
      assert.equal(table.head[0], 'Hour');
      assert.equal(table.rows.length, 24, 'a row per hour of today');
      assert.deepEqual(table.foot.slice(0, 3), ['Total', String(f.in), String(f.out)]);
      const nonEmpty = table.rows.filter((r) => r[1] !== '0' || r[2] !== '0');
      assert.ok(nonEmpty.length >= 1 && nonEmpty.length <= 2, 'the messages lie in the current hour (or the one before)');
    });

    // CSV export: exactly what the table shows.
    await page.getByRole('radio', { name: 'Day', exact: true }).check();
    await eventually('statistics: today by day', async () => assert.equal((await statsTable(page)).rows.length, 1));
    const shown = await statsTable(page);
    assert.deepEqual(shown.rows[0], [label, ...expectedColumns('dashboard').values], "today's row");
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const day = new Date().toISOString().slice(0, 10);
    assert.equal(download.suggestedFilename(), `botwatch-${BOT}-dashboard-${day}_${day}.csv`);
    const csv = (await readFile(await download.path(), 'utf8')).split('\r\n');
    assert.equal(csv[0], 'bucket_start,label,Incoming,Outgoing,Existing users,New users,Unique users');
    assert.equal(csv[1], [`${day}T00:00:00.000Z`, ...shown.rows[0]].join(','));
    assert.equal(csv[2], ['', ...shown.foot].join(','), 'the total line, as the table shows it');
    assert.equal(csv[3], '');

    t.assertClean();
  } finally {
    await t.close();
  }
});

/** The dialog view of a user: the header, the mode, and every message ingested for
 *  that user in order, with who wrote it, its text and its attachments. */
async function checkDialogView(page, user) {
  const msgs = messagesOf(user.id);
  const view = page.locator('section.view');
  await eventually(`dialog view of ${user.id}: the messages`, async () => {
    const shown = await view.locator('li.message').evaluateAll((ls) =>
      ls.map((l) => ({ id: l.getAttribute('data-id'), from: l.querySelector('.from')?.textContent, text: l.querySelector('p.text')?.textContent ?? null })),
    );
    assert.deepEqual(
      shown,
      msgs.map((m) => ({ id: m.id, from: m.direction === 'in' ? names.get(user.id) : m.sender?.kind === 'operator' ? `Operator ${OPERATOR}` : 'Bot', text: m.text ?? null })),
    );
  });
  assert.equal(await textOf(view.locator('h2')), names.get(user.id));
  const counts = view.locator('header p.muted');
  assert.equal(await counts.locator('[role="img"]').getAttribute('aria-label'), PROVIDER_NAME[PROVIDER[user.id] ?? 'telegram'], 'the provider');
  assert.equal((await textOf(counts)).replace(/^[A-Z]{2} /, ''), `${plural(msgs.length, 'message')} · 1 session`);
  assert.equal(await view.locator('[data-mode]').getAttribute('data-mode'), 'auto');
  assert.equal(await textOf(view.locator('[data-mode]')), 'Auto: the bot answers');
  assert.equal(await view.getByRole('list', { name: `Messages with ${names.get(user.id)}` }).count(), 1);
  for (const m of msgs) assert.match(await textOf(view.locator(`li.message[data-id="${m.id}"] time`)), /^\d\d:\d\d$/, 'each message has its time');
  assert.equal(await page.locator(`section.list li[data-user="${user.id}"]`).getAttribute('class'), 'open', 'the open dialog is marked in the list');
}

// ---------------------------------------------------------------------------------------

test('3. live: a new user, a new message and the statistics appear without a reload', { timeout: 30_000 }, async () => {
  const t = await openPage(browser, server);
  try {
    const { page } = t;
    await page.goto(`/bots/${BOT}`);
    await live(page);
    await page.locator('section.users tbody tr').first().waitFor();
    const before = today();

    let navigations = 0;
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations += 1;
    });
    await page.evaluate(() => {
      window.__marker = 1;
    });

    const MARIA = { id: `u-new-${RUN}`, name: 'Марія Нова' };
    const first = message(MARIA, 'in', 'Is anyone there?');
    await ingestOk(first);
    const row = page.locator(`tr[data-user="${MARIA.id}"]`);
    await row.waitFor({ timeout: 5000 });
    assert.equal(await textOf(row.locator('.name')), MARIA.name);
    assert.equal(await textOf(row.locator('td').nth(1)), '1', 'her one message');
    assert.equal(await textOf(row.locator('td').nth(3)), '1', 'her one session');
    assert.equal(await page.locator('section.users tbody tr').first().getAttribute('data-user'), MARIA.id, 'the latest user is on top');
    await eventually('main page: the figures follow', async () => {
      assert.equal(await textOf(page.locator('#users-h')), `Users ${before.users + 1}`);
      const label = await page.locator('main figure.chart').nth(0).locator('[role="img"]').getAttribute('aria-label');
      assert.match(label ?? '', new RegExp(`Totals: Incoming: ${before.in + 1}, Outgoing: ${before.out}$`));
      assertTop(await topRows(page.locator('main')), 'main page, live');
    });
    assert.equal(await page.evaluate(() => window.__marker), 1, 'the page was not reloaded');
    assert.equal(navigations, 0, 'no navigation happened');

    // The dialog view, open on Olena: her new message shows up in it.
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Dialogs' }).click();
    await page.locator(`section.list li[data-user="${OLENA.id}"] a`).click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs/${OLENA.id}`);
    await checkDialogView(page, OLENA);
    navigations = 0;
    await page.evaluate(() => {
      window.__marker = 2;
    });
    const text = `Can I change the delivery address? (${RUN})`;
    const next = message(OLENA, 'in', text);
    await ingestOk(next);
    const item = page.locator(`section.view li.message[data-id="${next.id}"]`);
    await item.waitFor({ timeout: 5000 });
    assert.equal(await textOf(item.locator('p.text')), text);
    assert.equal(await textOf(item.locator('.from')), OLENA.name);
    assert.equal(await page.locator('section.view li.message').last().getAttribute('data-id'), next.id, 'the new message is the last one');
    await eventually('dialogs list: her dialog moves to the top with the new preview', async () => {
      const top = page.locator('section.list li[data-user]').first();
      assert.equal(await top.getAttribute('data-user'), OLENA.id);
      assert.equal(await textOf(top.locator('.preview')), text);
    });
    await eventually('dialog header: the message count follows', async () =>
      assert.equal(await textOf(page.locator('section.view header p.muted')), `TG ${plural(messagesOf(OLENA.id).length, 'message')} · 1 session`),
    );
    assert.equal(await page.evaluate(() => window.__marker), 2, 'the page was not reloaded');
    assert.equal(navigations, 0, 'no navigation happened');

    // Statistics over a range that includes today follow too.
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Statistics' }).click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/statistics`);
    const label = await todayLabel(page);
    await checkStatistics(page, 'dashboard', label);
    navigations = 0;
    await page.evaluate(() => {
      window.__marker = 3;
    });
    await ingestOk([message(OLENA, 'out', 'You can change it in your account.'), message(JOHN, 'in', 'Thanks!')]);
    await checkStatistics(page, 'dashboard', label);
    assert.equal(await page.evaluate(() => window.__marker), 3, 'the page was not reloaded');
    assert.equal(navigations, 0, 'no navigation happened');
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

test("4. CHAT opens the user's dialog with its messages, file and card", { timeout: 30_000 }, async () => {
  const t = await openPage(browser, server);
  try {
    const { page } = t;
    await page.goto(`/bots/${BOT}`);
    await live(page);
    await page.evaluate(() => {
      window.__marker = 4;
    });
    const chat = page.locator(`tr[data-user="${OLENA.id}"]`).getByRole('link', { name: `Chat with ${OLENA.name}` });
    assert.equal(await textOf(chat), 'CHAT');
    await chat.click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs/${OLENA.id}`, { timeout: 5000 });
    assert.equal(await page.evaluate(() => window.__marker), 4, 'followed inside the app, without a reload');
    assert.equal(await page.getByRole('navigation', { name: 'Pages' }).locator('[aria-current="page"]').textContent(), 'Dialogs');
    await checkDialogView(page, OLENA);

    // The bot's answer with a file and a card.
    const answer = messagesOf(OLENA.id).find((m) => m.attachments);
    const li = page.locator(`li.message[data-id="${answer.id}"]`);
    assert.equal(await textOf(li.locator('p.text')), 'Your order has shipped');
    assert.equal(await li.getAttribute('class'), 'message bot');
    const file = li.locator('.file-att').getByRole('link', { name: FILE.name });
    assert.equal(await file.getAttribute('href'), FILE.url);
    assert.equal(await file.getAttribute('download'), FILE.name);
    assert.match(await textOf(li.locator('.file-att')), /invoice\.pdf \(application\/pdf, 47\.1 KB\)/);
    const card = li.locator('.card-att');
    assert.equal(await textOf(card.locator('strong')), CARD.title);
    assert.equal(await textOf(card.locator('.muted')), CARD.subtitle);
    assert.deepEqual(await card.locator('ul.buttons li').allTextContents(), ['Track']);
    await card.getByText('Track', { exact: true }).waitFor({ state: 'visible' });
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

test('5. the dialogs filter by mode: Manual shows none, Auto and All show everyone', { timeout: 30_000 }, async () => {
  const t = await openPage(browser, server);
  try {
    const { page } = t;
    const everyone = usersByLast();
    const listed = () => page.locator('section.list li[data-user]').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-user')));
    const radio = (name) => page.getByRole('radiogroup', { name: 'Show dialogs' }).getByRole('radio', { name, exact: true });
    const checked = async () => {
      const out = [];
      for (const n of ['All', 'Auto', 'Manual']) if ((await radio(n).getAttribute('aria-checked')) === 'true') out.push(n);
      return out;
    };

    await page.goto(`/bots/${BOT}/dialogs`);
    await live(page);
    await eventually('dialogs: everyone', async () => assert.deepEqual(await listed(), everyone));

    await radio('Manual').click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs` && u.search === '?mode=manual', { timeout: 5000 });
    await page.locator('section.list').getByText('No dialogs in Manual mode.', { exact: true }).waitFor({ timeout: 5000 });
    assert.deepEqual(await listed(), [], 'no dialog is in Manual mode');
    assert.deepEqual(await checked(), ['Manual']);

    await radio('Auto').click();
    await page.waitForURL((u) => u.search === '?mode=auto', { timeout: 5000 });
    await eventually('dialogs, Auto: everyone', async () => assert.deepEqual(await listed(), everyone));
    assert.deepEqual(await checked(), ['Auto']);
    assert.equal(await page.getByText(/No dialogs/).count(), 0);

    await radio('All').click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs` && u.search === '', { timeout: 5000 });
    await eventually('dialogs, All: everyone', async () => assert.deepEqual(await listed(), everyone));
    assert.deepEqual(await checked(), ['All']);

    // The filter is in the address: loading it shows the same.
    await page.goto(`/bots/${BOT}/dialogs?mode=manual`);
    await live(page);
    await page.locator('section.list').getByText('No dialogs in Manual mode.', { exact: true }).waitFor({ timeout: 5000 });
    assert.deepEqual(await checked(), ['Manual']);
    assert.deepEqual(await listed(), []);
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

const XSS = {
  name: '<img src=x onerror="window.__xss_name=1">',
  text: '<script>window.__xss_text=1</script><img src=y onerror="window.__xss_text=2">',
  file: '<svg onload="window.__xss_file=1">',
  url: 'javascript:window.__xss_url=1',
};

/** What would show that chat data was rendered as HTML, or ran. */
function xssTraces(page) {
  return page.evaluate(() => ({
    imgX: document.querySelectorAll('img[src="x"]').length,
    imgY: document.querySelectorAll('img[src="y"]').length,
    scripts: [...document.querySelectorAll('script')].filter((s) => (s.textContent ?? '').includes('__xss')).length,
    svgOnload: document.querySelectorAll('svg[onload]').length,
    handlers: document.querySelectorAll('[onerror], [onload]').length,
    jsLinks: [...document.querySelectorAll('a[href], [src]')].filter((e) => /^\s*javascript:/i.test(e.getAttribute('href') ?? e.getAttribute('src') ?? '')).length,
    flags: ['__xss_name', '__xss_text', '__xss_file', '__xss_url'].map((k) => [k, typeof window[k]]),
  }));
}

async function assertNoXss(page, where) {
  assert.deepEqual(
    await xssTraces(page),
    {
      imgX: 0,
      imgY: 0,
      scripts: 0,
      svgOnload: 0,
      handlers: 0,
      jsLinks: 0,
      flags: [
        ['__xss_name', 'undefined'],
        ['__xss_text', 'undefined'],
        ['__xss_file', 'undefined'],
        ['__xss_url', 'undefined'],
      ],
    },
    `${where}: chat data rendered as markup or run`,
  );
}

test('6. stored XSS in names, texts and attachments never executes', { timeout: 40_000 }, async () => {
  const EVIL = { id: `u-xss-${RUN}`, name: XSS.name };

  // A javascript: address is refused at the door, and nothing of that batch is stored.
  const refused = message(EVIL, 'in', 'a file with a script for an address', { attachments: [{ type: 'file', url: XSS.url, name: 'run.pdf' }] });
  const { status, body } = await server.ingest([refused]);
  assert.equal(status, 400, `a javascript: URL: ${JSON.stringify(body)}`);
  assert.equal(body.error, 'invalid_events');
  assert.deepEqual(body.details.map((d) => [d.index, d.field]), [[0, 'attachments[0].url']]);

  // The rest is stored as it came: it must show as text.
  const [t1, t2] = stamps(2);
  const withFile = message(EVIL, 'in', null, { ts: t1, attachments: [{ type: 'file', url: 'https://example.invalid/files/report.pdf', name: XSS.file, mime: 'application/pdf', size: 1234 }] });
  const withText = message(EVIL, 'in', XSS.text, { ts: t2 });
  await ingestOk([withFile, withText]);

  const t = await openPage(browser, server);
  try {
    const { page } = t;

    await page.goto(`/bots/${BOT}`);
    await live(page);
    const row = page.locator(`tr[data-user="${EVIL.id}"]`);
    await row.waitFor();
    assert.equal(await row.locator('.name').textContent(), XSS.name);
    await page.getByText('<img src=x onerror', { exact: false }).first().waitFor({ state: 'visible' });
    await page.locator('table.top-list').getByText(XSS.text, { exact: true }).waitFor({ state: 'visible' });
    await assertNoXss(page, 'main page');

    await page.goto(`/bots/${BOT}/board`);
    await live(page);
    const latest = page.locator(`.board .latest li[data-user="${EVIL.id}"]`);
    await latest.waitFor();
    assert.equal(await latest.locator('.name').textContent(), XSS.name);
    await page.locator('.board table.top-list').getByText(XSS.text, { exact: true }).waitFor({ state: 'visible' });
    await assertNoXss(page, 'board');

    await page.goto(`/bots/${BOT}/dialogs`);
    await live(page);
    const item = page.locator(`section.list li[data-user="${EVIL.id}"]`);
    await item.waitFor();
    assert.equal(await item.locator('.name').textContent(), XSS.name);
    assert.equal(await item.locator('.preview').textContent(), XSS.text);
    await assertNoXss(page, 'dialogs list');

    await item.locator('a').click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs/${EVIL.id}`);
    const view = page.locator('section.view');
    await view.locator(`li.message[data-id="${withText.id}"]`).waitFor();
    assert.equal(await view.locator('h2').textContent(), XSS.name);
    assert.equal(await view.locator(`li.message[data-id="${withText.id}"] p.text`).textContent(), XSS.text);
    await view.getByText('<script>window.__xss_text=1</script>', { exact: false }).waitFor({ state: 'visible' });
    const fileLink = view.locator(`li.message[data-id="${withFile.id}"] .file-att a`);
    assert.equal(await fileLink.textContent(), XSS.file);
    assert.equal(await fileLink.getAttribute('href'), 'https://example.invalid/files/report.pdf');
    await view.getByText(XSS.file, { exact: true }).waitFor({ state: 'visible' });
    assert.equal(await view.locator(`li.message[data-id="${refused.id}"]`).count(), 0, 'the refused event was not stored');
    assert.deepEqual(
      await view.locator('li.message').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-id'))),
      [withFile.id, withText.id],
    );
    await assertNoXss(page, 'dialog view');
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

test('7. log out ends the session: the login page, and the data is gone', { timeout: 30_000 }, async () => {
  const t = await openPage(browser, server, { allowFailedRequests: SESSION_401 });
  try {
    const { page, context } = t;
    await page.goto(`/bots/${BOT}`);
    await live(page);
    await page.locator(`tr[data-user="${OLENA.id}"]`).waitFor();

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('button', { name: 'Log in' }).waitFor({ timeout: 5000 });
    assert.equal(path(page), '/login');
    assert.equal(await page.locator('tr[data-user]').count(), 0);
    assert.equal(await page.getByText(OLENA.name).count(), 0);
    // The server forgot the session, not just the page.
    const res = await context.request.get(`/api/v1/bots/${BOT}/users`);
    assert.equal(res.status(), 401, 'the old session cookie no longer reads data');

    await page.goto(`/bots/${BOT}`);
    await page.getByRole('button', { name: 'Log in' }).waitFor({ timeout: 5000 });
    assert.equal(path(page), '/login');
    assert.equal(new URL(page.url()).searchParams.get('next'), `/bots/${BOT}`, 'the login page will lead back to the bot');
    assert.equal(await page.locator('tr[data-user]').count(), 0, 'no data without a session');
    assert.equal(await page.getByText(OLENA.name).count(), 0);
    assert.equal(await page.locator('.connection').count(), 0, 'no live connection badge on the login page');
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

test('8. a server restart: the page says it is reconnecting, then resumes live without a reload', { timeout: 60_000 }, async () => {
  const t = await openPage(browser, server);
  try {
    const { page } = t;
    await page.goto(`/bots/${BOT}/dialogs/${OLENA.id}`);
    await live(page);
    await checkDialogView(page, OLENA);
    await page.evaluate(() => {
      window.__marker = 8;
    });

    await server.halt();
    await page.locator('.connection[data-state="reconnecting"]').waitFor({ timeout: 5000 });
    assert.equal(await textOf(page.locator('.connection')), 'Reconnecting…');

    // Back on the same data: one message lands before the page has reconnected (most
    // likely; its retry waits up to a few seconds), one after.
    await server.start();
    const early = message(OLENA, 'in', `Hello again, are you back? (${RUN})`);
    await ingestOk(early);
    await page.locator('.connection[data-state="live"]').waitFor({ timeout: 20_000 });
    const late = message(OLENA, 'in', `Good, thanks (${RUN})`);
    await ingestOk(late);
    for (const m of [early, late]) {
      const item = page.locator(`section.view li.message[data-id="${m.id}"]`);
      await item.waitFor({ timeout: 5000 });
      assert.equal(await textOf(item.locator('p.text')), m.text);
    }
    // Each message once, in time order, the whole dialog still there.
    await eventually('the dialog view holds every message once, in order', async () => {
      const ids = await page.locator('section.view li.message').evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
      assert.deepEqual(ids, messagesOf(OLENA.id).map((e) => e.id));
    });
    assert.equal(await page.evaluate(() => window.__marker), 8, 'the page was not reloaded');
    // The console reports the refused connections while the server was down: expected
    // here, and nothing else.
    const others = t.consoleErrors.filter((e) => !/ERR_CONNECTION_REFUSED|WebSocket connection to .* failed/.test(e));
    assert.deepEqual(others, [], 'console errors other than the refused connections');
    assert.deepEqual(t.pageErrors, []);
    assert.deepEqual(t.dialogs, []);
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

test("9. a bot's page opened before its first event comes alive with it", { timeout: 30_000 }, async () => {
  const bot = `fresh-${RUN}`;
  // The bot does not exist yet: its settings and users table answer 404 until then.
  const t = await openPage(browser, server, {
    allowFailedRequests: [
      { path: `/api/v1/bots/${bot}/settings`, status: 404 },
      { path: `/api/v1/bots/${bot}/users`, status: 404 },
    ],
  });
  try {
    const { page } = t;
    await page.goto(`/bots/${bot}`);
    await live(page);
    await page.locator('section.users').getByText('No users yet.').waitFor({ timeout: 5000 });
    assert.equal(await page.locator('section.users [role="alert"]').count(), 0, 'no error shown for a bot without events');
    const first = { ...message({ id: 'u-first', name: 'Перший' }, 'in', 'hi there'), bot };
    const { status } = await server.ingest([first]);
    assert.equal(status, 202);
    const row = page.locator('tr[data-user="u-first"]');
    await row.waitFor({ timeout: 5000 });
    assert.equal(await textOf(row.locator('.name')), 'Перший');
    await eventually('the top messages follow', async () => assert.deepEqual(await topRows(page.locator('main')), [['hi there', 1]]));
    t.assertClean();
  } finally {
    await t.close();
  }
});

// ---------------------------------------------------------------------------------------

/** The dashboard user with the operator role (made by the first test that needs one). */
const OPERATOR = 'e2e-op';
let operatorPassword;

/** A page signed in as the operator. */
async function openAsOperator(options = {}) {
  operatorPassword ??= server.addUser(OPERATOR, 'operator');
  const t = await openPage(browser, server, { ...options, loggedIn: false });
  const res = await t.context.request.post('/api/v1/session', { data: { username: OPERATOR, password: operatorPassword } });
  assert.equal(res.status(), 200, `operator login: ${res.status()} ${await res.text()}`);
  return t;
}

test('10. an operator takes a dialog over and hands it back; the bot is told, every view follows', { timeout: 40_000 }, async () => {
  const t = await openAsOperator();
  // A viewer beside, on the same dialog: sees the switch live, has no toggle.
  const v = await openPage(browser, server);
  try {
    const { page } = t;
    await page.goto(`/bots/${BOT}/dialogs/${TARAS.id}`);
    await live(page);
    await checkDialogView(page, TARAS);
    await v.page.goto(`/bots/${BOT}/dialogs/${TARAS.id}`);
    await live(v.page);
    assert.equal(await v.page.locator('button.mode-toggle').count(), 0, 'a viewer cannot switch modes');

    const header = page.locator('section.view header');
    assert.equal(await header.locator('[data-mode]').getAttribute('data-mode'), 'auto');
    await page.getByRole('button', { name: /Take over/ }).click();
    await header.locator('[data-mode="manual"]').waitFor({ timeout: 5000 });
    assert.equal(await page.getByRole('button', { name: /Hand back to the bot/ }).getAttribute('aria-pressed'), 'true');
    // The bot learns it from its next ingest answer.
    const next = message(TARAS, 'in', 'Is a person there?');
    const { status, body } = await server.ingest([next]);
    assert.equal(status, 202);
    assert.equal(body.dialogs[TARAS.id].mode, 'manual');
    ingested.push(next);
    // The viewer's page follows live; the dialogs list shows the headphones; the
    // Manual filter lists the dialog.
    await v.page.locator('section.view header [data-mode="manual"]').waitFor({ timeout: 5000 });
    const row = page.locator(`section.list li[data-user="${TARAS.id}"]`);
    await row.getByRole('img', { name: /Manual mode/ }).waitFor({ timeout: 5000 });
    await page.getByRole('radiogroup', { name: 'Show dialogs' }).getByRole('radio', { name: 'Manual', exact: true }).click();
    await eventually('the Manual filter lists the dialog', async () =>
      assert.deepEqual(await page.locator('section.list li[data-user]').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-user'))), [TARAS.id]),
    );

    // Leaving the dialog in Manual mode: a reminder, which can hand it back.
    await page.getByRole('radiogroup', { name: 'Show dialogs' }).getByRole('radio', { name: 'All', exact: true }).click();
    await page.locator(`section.list li[data-user="${JOHN.id}"] a`).click();
    const reminder = page.locator('.reminder');
    await reminder.waitFor({ timeout: 5000 });
    assert.match(await textOf(reminder), new RegExp(`${TARAS.name} is still in Manual mode`));
    assert.equal(await v.page.locator('.reminder').count(), 0, 'no reminder for a viewer');
    await reminder.getByRole('button', { name: 'Hand back to the bot' }).click();
    await reminder.waitFor({ state: 'detached', timeout: 5000 });
    await v.page.locator('section.view header [data-mode="auto"]').waitFor({ timeout: 5000 });
    const again = message(TARAS, 'in', 'Thanks, bot');
    const answer = await server.ingest([again]);
    assert.equal(answer.body.dialogs[TARAS.id].mode, 'auto', 'back to Auto: the bot may answer again');
    ingested.push(again);

    // The toggle hands back too, and a dialog left in Auto leaves no reminder.
    await page.locator(`section.list li[data-user="${TARAS.id}"] a`).click();
    await page.getByRole('button', { name: /Take over/ }).click();
    await header.locator('[data-mode="manual"]').waitFor({ timeout: 5000 });
    await page.getByRole('button', { name: /Hand back to the bot/ }).click();
    await header.locator('[data-mode="auto"]').waitFor({ timeout: 5000 });
    await page.locator(`section.list li[data-user="${JOHN.id}"] a`).click();
    await page.waitForURL((u) => u.pathname.endsWith(`/dialogs/${JOHN.id}`));
    assert.equal(await page.locator('.reminder').count(), 0);
    t.assertClean();
    v.assertClean();
  } finally {
    await t.close();
    await v.close();
  }
});

// ---------------------------------------------------------------------------------------
// Operator messages: written in the dialog view, delivered by botwatch through the
// user's channel, their outcome shown on the message.

/** An operator message in the tally (the figures count it as an outbound message). */
function operatorSent(user, id, text) {
  ingested.push({ id, bot: BOT, type: 'message', direction: 'out', provider: PROVIDER[user.id], user, text, sender: { kind: 'operator', id: `user:${OPERATOR}` } });
}

/** The operator messages the dialog view shows, oldest first. */
const operatorItems = (page) => page.locator('section.view li.message.operator');

test('11. an operator writes in Manual mode; without a channel the message shows as not delivered, and why', { timeout: 40_000 }, async () => {
  // Viber: botwatch does not deliver there itself, and the bot has no webhook_url.
  const VERA = { id: 'u-vera', name: 'Віра Б.' };
  PROVIDER[VERA.id] = 'viber';
  await ingestOk(message(VERA, 'in', 'Can a person help me?'));
  const t = await openAsOperator();
  const v = await openPage(browser, server);
  try {
    const { page } = t;
    const view = page.locator('section.view');
    await page.goto(`/bots/${BOT}/dialogs/${VERA.id}`);
    await live(page);
    await view.locator('li.message').first().waitFor();
    await v.page.goto(`/bots/${BOT}/dialogs/${VERA.id}`);
    await live(v.page);
    await v.page.locator('section.view li.message').first().waitFor();

    // Auto: the bot answers, so no composer; a hint says how to write.
    await view.locator('.compose-hint').waitFor();
    assert.match(await textOf(view.locator('.compose-hint')), /The bot answers in Auto mode\. To write to Віра Б\. yourself, take the dialog over first/);
    assert.equal(await view.locator('.composer').count(), 0);

    await page.getByRole('button', { name: /Take over/ }).click();
    await view.locator('header [data-mode="manual"]').waitFor({ timeout: 5000 });
    const box = view.getByRole('textbox', { name: `Message to ${VERA.name}` });
    await box.waitFor({ timeout: 5000 });
    assert.equal(await view.locator('.compose-hint').count(), 0);
    for (const name of ['Send a file', 'Compose a card', 'Send']) {
      assert.equal(await view.getByRole('button', { name, exact: true }).count(), 1, `the ${name} button`);
    }
    assert.equal(await view.getByRole('button', { name: 'Send', exact: true }).isDisabled(), true, 'nothing to send yet');

    // Enter sends; the text is cleared once the server took it.
    const text = `Hello, a person here (${RUN})`;
    await box.fill(text);
    await box.press('Enter');
    await operatorItems(page).first().waitFor({ timeout: 5000 });
    const first = operatorItems(page).first();
    const id = await first.getAttribute('data-id');
    operatorSent(VERA, id, text);
    await eventually('the text is cleared', async () => assert.equal(await box.inputValue(), ''));
    assert.equal(await textOf(first.locator('p.text')), text);
    assert.equal(await textOf(first.locator('.from')), `Operator ${OPERATOR}`);

    // Nobody to hand it to: failed, and the reason is on the message as text.
    const failed = view.locator(`li.message[data-id="${id}"][data-delivery="failed"]`);
    await failed.waitFor({ timeout: 10_000 });
    const why = await textOf(failed.locator('.delivery-failed'));
    assert.match(why, /^Not delivered: .*no webhook_url/);
    const history = await server.api(`/api/v1/bots/${BOT}/dialogs/${VERA.id}/messages`);
    const stored = history.items.find((m) => m.id === id);
    assert.equal(stored?.delivery?.state, 'failed', 'the history says the same');
    assert.equal(why, `Not delivered: ${stored.delivery.reason}`);

    // Shift+Enter is a new line, not a message; the Send button sends.
    await box.pressSequentially('line one');
    await box.press('Shift+Enter');
    await box.pressSequentially('line two');
    assert.equal(await box.inputValue(), 'line one\nline two');
    assert.equal(await operatorItems(page).count(), 1, 'Shift+Enter sent nothing');
    await view.getByRole('button', { name: 'Send', exact: true }).click();
    await eventually('the second message', async () => assert.equal(await operatorItems(page).count(), 2));
    const second = operatorItems(page).nth(1);
    const id2 = await second.getAttribute('data-id');
    operatorSent(VERA, id2, 'line one\nline two');
    assert.equal(await second.locator('p.text').textContent(), 'line one\nline two');
    await view.locator(`li.message[data-id="${id2}"][data-delivery="failed"]`).waitFor({ timeout: 10_000 });
    assert.equal(await view.locator('.composer [role="alert"]').count(), 0, 'no error at the composer: the server took both');

    // The viewer follows live: the messages and their outcome; no composer, no hint.
    const seen = v.page.locator(`section.view li.message[data-id="${id}"][data-delivery="failed"]`);
    await seen.waitFor({ timeout: 5000 });
    assert.match(await textOf(seen.locator('.delivery-failed')), /no webhook_url/);
    await v.page.locator(`section.view li.message[data-id="${id2}"]`).waitFor({ timeout: 5000 });
    assert.equal(await v.page.locator('section.view .composer, section.view .compose-hint').count(), 0, 'a viewer has no composer');
    assert.equal(await v.page.getByRole('textbox', { name: /Message to/ }).count(), 0);

    // Handed back: the composer goes, the hint comes back; what was typed is still
    // there when the dialog is taken over again.
    await box.fill('a draft');
    await page.getByRole('button', { name: /Hand back to the bot/ }).click();
    await view.locator('.compose-hint').waitFor({ timeout: 5000 });
    assert.equal(await view.locator('.composer').count(), 0);
    await page.getByRole('button', { name: /Take over/ }).click();
    await box.waitFor({ timeout: 5000 });
    assert.equal(await box.inputValue(), 'a draft');
    await page.getByRole('button', { name: /Hand back to the bot/ }).click();
    await view.locator('.compose-hint').waitFor({ timeout: 5000 });
    t.assertClean();
    v.assertClean();
  } finally {
    await t.close();
    await v.close();
  }
});

/** A bot's webhook for the tests, on 127.0.0.1: answers 200 and keeps every call. */
async function startHook() {
  const calls = [];
  const http = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      let json = null;
      try {
        json = JSON.parse(body);
      } catch {}
      calls.push({ path: req.url, headers: req.headers, body, json });
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{}');
    });
  });
  await new Promise((ok) => http.listen(0, '127.0.0.1', ok));
  return {
    url: `http://127.0.0.1:${http.address().port}/hook`,
    calls,
    /** The operator_message call of message `id` (retried until it came). */
    operatorMessage: (id) =>
      eventually(`the webhook got operator message ${id}`, () => {
        const call = calls.find((c) => c.json?.type === 'operator_message' && c.json.id === id);
        assert.ok(call, `calls so far: ${calls.map((c) => c.json?.type).join(', ')}`);
        return call;
      }),
    close: () => {
      http.closeAllConnections();
      return new Promise((ok) => http.close(ok));
    },
  };
}

async function putSettings(body) {
  const res = await fetch(`${server.base}/api/v1/bots/${BOT}/settings`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  assert.equal(res.status, 200, `PUT settings: ${res.status} ${await res.text()}`);
}

test('12. with a webhook, a card and a file from the composer reach the bot, signed, and show as sent', { timeout: 60_000 }, async () => {
  const WALT = { id: 'u-walt', name: 'Walt W.' };
  PROVIDER[WALT.id] = 'viber';
  const SECRET = 'a-secret-of-enough-length';
  const hook = await startHook();
  await putSettings({ webhook_url: hook.url, webhook_secret: SECRET });
  await ingestOk(message(WALT, 'in', 'Where is order 12?'));
  // The card with an ftp: image is refused (400): the browser logs that answer.
  const t = await openAsOperator({ allowFailedRequests: [{ path: `/api/v1/bots/${BOT}/dialogs/${WALT.id}/messages`, status: 400 }] });
  try {
    const { page } = t;
    const view = page.locator('section.view');
    await page.goto(`/bots/${BOT}/dialogs/${WALT.id}`);
    await live(page);
    await view.locator('li.message').first().waitFor();
    await page.getByRole('button', { name: /Take over/ }).click();
    await view.locator('header [data-mode="manual"]').waitFor({ timeout: 5000 });

    // The card builder: a title, a subtitle, an image, buttons added and removed.
    await view.getByRole('button', { name: 'Compose a card' }).click();
    const builder = view.getByRole('form', { name: 'Card' });
    await builder.waitFor();
    assert.equal(await view.getByRole('button', { name: 'Compose a card' }).getAttribute('aria-expanded'), 'true');
    // The focus moves once the builder has rendered: asked until it has.
    await eventually('the builder opens on its title', async () =>
      assert.equal(await page.evaluate(() => document.activeElement?.closest('label')?.textContent), 'Title'),
    );
    await builder.getByLabel('Title', { exact: true }).fill('Order #12');
    await builder.getByLabel('Subtitle').fill('Shipped today');
    // An address the server refuses first: its message shows, the card stays.
    await builder.getByLabel('Image address').fill('ftp://example.invalid/order.png');
    const add = builder.getByRole('button', { name: 'Add a button' });
    await add.click();
    await eventually('a new row is ready to type in', async () =>
      assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'Button 1 title'),
    );
    await builder.getByLabel('Button 1 title').fill('Track');
    await builder.getByLabel('Button 1 payload').fill('track:12');
    await add.click();
    await builder.getByLabel('Button 2 title').fill('Open');
    await builder.getByLabel('Button 2 does').selectOption('url');
    await builder.getByLabel('Button 2 address').fill('https://shop.example/orders/12');
    await add.click();
    await builder.getByLabel('Button 3 title').fill('Never sent');
    await builder.getByRole('button', { name: 'Remove button 3' }).click();
    assert.equal(await builder.locator('.button-rows li').count(), 2);

    await builder.getByRole('button', { name: 'Send card' }).click();
    const alert = view.locator('.composer [role="alert"]');
    await alert.waitFor({ timeout: 5000 });
    assert.match(await textOf(alert), /image: must be an http\(s\) URL/);
    assert.equal(await builder.getByLabel('Title', { exact: true }).inputValue(), 'Order #12', 'the card stays, to be fixed');
    assert.equal(await operatorItems(page).count(), 0, 'nothing was recorded');

    const image = `${UNREACHABLE}cards/order-12.png`;
    await builder.getByLabel('Image address').fill(image);
    await builder.getByRole('button', { name: 'Send card' }).click();
    await builder.waitFor({ state: 'detached', timeout: 5000 });
    assert.equal(await alert.count(), 0, 'the error is gone');
    await operatorItems(page).first().waitFor({ timeout: 5000 });
    const cardItem = operatorItems(page).first();
    const cardId = await cardItem.getAttribute('data-id');
    operatorSent(WALT, cardId, null);

    // The bot's webhook took it: sent, and shown as the card it is.
    await view.locator(`li.message[data-id="${cardId}"][data-delivery="sent"]`).waitFor({ timeout: 10_000 });
    assert.equal(await cardItem.getByRole('img', { name: 'Sent' }).count(), 1, 'the check mark');
    assert.equal(await cardItem.locator('.delivery-failed').count(), 0);
    const card = cardItem.locator('.card-att');
    assert.equal(await textOf(card.locator('strong')), 'Order #12');
    assert.equal(await textOf(card.locator('.muted')), 'Shipped today');
    assert.equal(await card.locator('img').getAttribute('src'), image);
    assert.deepEqual(await card.locator('ul.buttons li').allTextContents(), ['Track', 'Open']);
    assert.equal(await card.getByRole('link', { name: 'Open' }).getAttribute('href'), 'https://shop.example/orders/12');

    // What the bot got: the card as built, signed with the bot's secret.
    const call = await hook.operatorMessage(cardId);
    assert.equal(call.json.user, WALT.id);
    assert.equal(call.json.operator, `user:${OPERATOR}`);
    const [sent] = call.json.attachments;
    assert.deepEqual(
      { type: sent.type, title: sent.title, subtitle: sent.subtitle, image: sent.image, buttons: sent.buttons.map((b) => [b.title, b.payload ?? null, b.url ?? null]) },
      { type: 'card', title: 'Order #12', subtitle: 'Shipped today', image, buttons: [['Track', 'track:12', null], ['Open', null, 'https://shop.example/orders/12']] },
    );
    const stamp = call.headers['x-botwatch-timestamp'];
    assert.equal(call.headers['x-botwatch-signature'], `sha256=${createHmac('sha256', SECRET).update(`${stamp}.${call.body}`).digest('hex')}`);

    // A file through "+", with what is typed as its caption.
    const NOTES = `Invoice 12: 3 items (${RUN})\n`;
    const box = view.getByRole('textbox', { name: `Message to ${WALT.name}` });
    await box.fill('The invoice');
    const [chooser] = await Promise.all([page.waitForEvent('filechooser'), view.getByRole('button', { name: 'Send a file' }).click()]);
    await chooser.setFiles({ name: 'invoice-12.txt', mimeType: 'text/plain', buffer: Buffer.from(NOTES) });
    await eventually('the file message', async () => assert.equal(await operatorItems(page).count(), 2));
    const fileItem = operatorItems(page).nth(1);
    const fileId = await fileItem.getAttribute('data-id');
    operatorSent(WALT, fileId, 'The invoice');
    await eventually('the caption is cleared', async () => assert.equal(await box.inputValue(), ''));
    await view.locator(`li.message[data-id="${fileId}"][data-delivery="sent"]`).waitFor({ timeout: 10_000 });
    assert.equal(await textOf(fileItem.locator('p.text')), 'The invoice');
    const link = fileItem.locator('.file-att a');
    assert.equal(await textOf(link), 'invoice-12.txt');
    assert.match(await textOf(fileItem.locator('.file-att')), new RegExp(`invoice-12\\.txt \\(text/plain, ${Buffer.byteLength(NOTES)} B\\)`));
    const href = await link.getAttribute('href');
    assert.match(href ?? '', new RegExp(`^${server.base}/api/v1/files/[0-9a-f]{32}$`));
    assert.equal(await (await fetch(href)).text(), NOTES, 'the file botwatch keeps is the one sent');
    const fileCall = await hook.operatorMessage(fileId);
    assert.equal(fileCall.json.text, 'The invoice');
    assert.deepEqual(
      fileCall.json.attachments.map((a) => [a.type, a.url, a.name]),
      [['file', href, 'invoice-12.txt']],
    );
    t.assertClean();
  } finally {
    await t.close();
    await putSettings({ webhook_url: null, webhook_secret: null }).catch(() => {});
    await hook.close();
  }
});

// ---------------------------------------------------------------------------------------
// The hand-off alert: a dialog waiting for a human, shown on every page of the bot until
// an operator takes it over.

/** The banner of the dialogs waiting for a human (absent while nobody waits). */
const waiting = (page) => page.locator('section.handoff');
/** A user's entry in it: the latest request, or one under "+N more". */
const waitingEntry = (page, user) => waiting(page).locator(`[data-handoff-user="${user.id}"]`);

/** A bot hands the dialog with `user` off to a human, as a bot does (its token). */
async function botHandsOff(user, reason) {
  const res = await fetch(`${server.base}/api/v1/bots/${BOT}/dialogs/${user.id}/handoff`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ reason }),
  });
  assert.equal(res.status, 202, `POST …/handoff: ${res.status}`);
  return res.json();
}

test('14. a user asks for a human: every page of the bot shows it live until an operator takes the dialog over; a bot hands off with its reason', { timeout: 60_000 }, async () => {
  const HANNA = { id: 'u-hanna', name: 'Ганна Л.' };
  const PAVLO = { id: 'u-pavlo', name: 'Павло Д.' };
  const t = await openAsOperator();
  // A viewer beside, on another page of the bot: sees every request and its end.
  const v = await openPage(browser, server);
  try {
    const { page } = t;
    await page.goto(`/bots/${BOT}`);
    await live(page);
    await page.locator('section.users tbody tr').first().waitFor();
    await v.page.goto(`/bots/${BOT}/statistics`);
    await live(v.page);
    assert.equal(await waiting(page).count(), 0, 'nobody waits for a human yet');
    assert.equal(await waiting(v.page).count(), 0);

    // Hanna asks for a human: the banner comes, live, on both pages.
    await ingestOk(message(HANNA, 'in', 'Can I talk to a human?'));
    for (const p of [page, v.page]) {
      const entry = waitingEntry(p, HANNA);
      await entry.waitFor({ timeout: 5000 });
      assert.equal(await textOf(entry), `${HANNA.name} asks for a human — “Can I talk to a human?” · Open`);
      assert.equal(await entry.getAttribute('role'), 'alert', 'screen readers announce it');
      assert.equal(await waiting(p).locator('details').count(), 0, 'nobody else waits');
    }
    assert.equal(path(page), `/bots/${BOT}`, 'the operator stayed on the main page');

    // Open: her dialog, flagged in the list and in its header.
    await waitingEntry(page, HANNA).getByRole('link', { name: `Open the dialog with ${HANNA.name}` }).click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs/${HANNA.id}`);
    const row = page.locator(`section.list li[data-user="${HANNA.id}"]`);
    const header = page.locator('section.view header');
    await row.locator('[role="img"][aria-label="Asks for a human"]').waitFor({ timeout: 5000 });
    assert.notEqual(await row.getAttribute('data-handoff'), null, 'the list marks the dialog');
    await header.locator('.handoff-flag').waitFor({ timeout: 5000 });
    assert.equal(await textOf(header.locator('.handoff-flag')), 'Asks for a human: Can I talk to a human?');
    assert.equal(await header.locator('[data-mode]').getAttribute('data-mode'), 'auto');
    assert.equal(await waiting(page).count(), 1, 'the banner stays until the dialog is taken over');

    // Take over answers the request: the banner goes from both pages, the flags too.
    await page.getByRole('button', { name: /Take over/ }).click();
    await header.locator('[data-mode="manual"]').waitFor({ timeout: 5000 });
    await waiting(page).waitFor({ state: 'detached', timeout: 5000 });
    await waiting(v.page).waitFor({ state: 'detached', timeout: 5000 });
    await eventually('the list no longer marks the dialog', async () => assert.equal(await row.getAttribute('data-handoff'), null));
    assert.equal(await row.locator('.hand-raised').count(), 0);
    assert.equal(await header.locator('.handoff-flag').count(), 0);
    assert.equal((await server.api(`/api/v1/bots/${BOT}/dialogs/${HANNA.id}`)).handoff, null, 'the API agrees');

    // Handed back to the bot: nothing waits (a switch answers, it does not ask).
    await page.getByRole('button', { name: /Hand back to the bot/ }).click();
    await header.locator('[data-mode="auto"]').waitFor({ timeout: 5000 });
    assert.equal(await waiting(page).count(), 0);

    // The bot hands her off, with its reason: both pages, the list and the header show it.
    assert.deepEqual(await botHandsOff(HANNA, 'payment question'), { flagged: true });
    for (const p of [page, v.page]) {
      const entry = waitingEntry(p, HANNA);
      await entry.waitFor({ timeout: 5000 });
      assert.equal(await textOf(entry), `The bot hands ${HANNA.name} to a human — payment question · Open`);
    }
    await eventually('the header shows the reason', async () => assert.equal(await textOf(header.locator('.handoff-flag')), 'The bot hands off to a human: payment question'));
    await eventually('the list marks the dialog again', async () => assert.notEqual(await row.getAttribute('data-handoff'), null));

    // Pavlo asks too (in Ukrainian): his request is the latest; Hanna's is one more,
    // which opens from the banner as well.
    await ingestOk(message(PAVLO, 'in', 'Покличте оператора, будь ласка'));
    for (const p of [page, v.page]) {
      const latest = waiting(p).locator('p.latest');
      await eventually('the latest request is Pavlo’s', async () => assert.equal(await latest.getAttribute('data-handoff-user'), PAVLO.id));
      assert.equal(await textOf(latest), `${PAVLO.name} asks for a human — “Покличте оператора, будь ласка” · Open`);
      assert.equal(await textOf(waiting(p).locator('summary')), '+1 more');
    }
    const vp = v.page;
    assert.equal(await waitingEntry(vp, HANNA).isVisible(), false, 'the others are folded');
    await waiting(vp).locator('summary').click();
    assert.equal(await textOf(waitingEntry(vp, HANNA)), `The bot hands ${HANNA.name} to a human — payment question · Open`);
    await waitingEntry(vp, HANNA).getByRole('link', { name: `Open the dialog with ${HANNA.name}` }).click();
    await vp.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs/${HANNA.id}`);
    await vp.locator('section.view header .handoff-flag').waitFor({ timeout: 5000 });
    assert.equal(await vp.locator('button.mode-toggle').count(), 0, 'a viewer cannot take it over');

    // Hanna taken over: Pavlo is left alone, on both pages. Then Pavlo, from the banner.
    await page.getByRole('button', { name: /Take over/ }).click();
    await header.locator('[data-mode="manual"]').waitFor({ timeout: 5000 });
    for (const p of [page, vp]) {
      await waitingEntry(p, HANNA).waitFor({ state: 'detached', timeout: 5000 });
      assert.equal(await waiting(p).locator('p.latest').getAttribute('data-handoff-user'), PAVLO.id);
      assert.equal(await waiting(p).locator('details').count(), 0, 'no one more');
    }
    await vp.locator('section.view header .handoff-flag').waitFor({ state: 'detached', timeout: 5000 });
    await page.getByRole('button', { name: /Hand back to the bot/ }).click();
    await header.locator('[data-mode="auto"]').waitFor({ timeout: 5000 });
    await waitingEntry(page, PAVLO).getByRole('link', { name: `Open the dialog with ${PAVLO.name}` }).click();
    await page.waitForURL((u) => u.pathname === `/bots/${BOT}/dialogs/${PAVLO.id}`);
    await header.locator('.handoff-flag').waitFor({ timeout: 5000 });
    await page.getByRole('button', { name: /Take over/ }).click();
    await header.locator('[data-mode="manual"]').waitFor({ timeout: 5000 });
    await waiting(page).waitFor({ state: 'detached', timeout: 5000 });
    await waiting(vp).waitFor({ state: 'detached', timeout: 5000 });
    await page.getByRole('button', { name: /Hand back to the bot/ }).click();
    await header.locator('[data-mode="auto"]').waitFor({ timeout: 5000 });
    assert.deepEqual((await server.api(`/api/v1/bots/${BOT}/dialogs`)).items.filter((d) => d.handoff).map((d) => d.user.id), [], 'nobody waits any more');
    t.assertClean();
    v.assertClean();
  } finally {
    await t.close();
    await v.close();
  }
});
