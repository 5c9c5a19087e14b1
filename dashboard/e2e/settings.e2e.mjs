// Settings → Other (analytics forwarding) against a real `botwatch serve` whose GA4 and
// Mixpanel addresses point at a stand-in HTTP server of this test (nothing goes to the
// internet): an admin sets GA4 up, sees the secret masked, sends test events (accepted,
// then refused with a validation message), sees an ingested message forwarded and the
// refusals of the server in words, asks for the history to be sent (the back-fill),
// switches forwarding off; a viewer only reads.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { eventually, launchBrowser, openPage, textOf } from './browser.mjs';
import { startServer } from './server.mjs';

const BOT = 'fwd';
const RUN = randomBytes(4).toString('hex');
const SECRET = `e2e-ga-secret-${RUN}`;
const OK_ANSWER = { validationMessages: [] };

/** GA4's and Mixpanel's stand-in: records what it gets; the debug endpoint answers
 *  `debugAnswer` (change it to make GA4 refuse a test event). */
function startStandIn() {
  const got = [];
  const stand = { got, debugAnswer: OK_ANSWER, base: '', close: () => {} };
  const http = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in');
      got.push({ method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), body });
      if (req.method === 'POST' && url.pathname === '/debug/mp/collect') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(stand.debugAnswer));
      } else if (req.method === 'POST' && url.pathname === '/mp/collect') {
        res.writeHead(204).end();
      } else if (req.method === 'POST' && url.pathname === '/import') {
        res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"code":200,"num_records_imported":1,"status":"OK"}');
      } else {
        res.writeHead(404).end('not here');
      }
    });
  });
  return new Promise((ok, fail) => {
    http.once('error', fail);
    http.listen(0, '127.0.0.1', () => {
      stand.base = `http://127.0.0.1:${http.address().port}`;
      stand.close = () => new Promise((done) => http.close(() => done()));
      ok(stand);
    });
  });
}

describe('settings: analytics forwarding', () => {
  let stand;
  let server;
  let browser;
  let viewerPassword;

  before(
    async () => {
      stand = await startStandIn();
      server = await startServer({
        username: 'ada',
        role: 'admin',
        env: {
          BOTWATCH_GA_ENDPOINT: stand.base,
          BOTWATCH_MIXPANEL_ENDPOINT: stand.base,
          BOTWATCH_SECRET_KEY: randomBytes(32).toString('hex'),
        },
      });
      browser = await launchBrowser();
      const { status, body } = await server.ingest({ id: `set-${RUN}-0`, bot: BOT, type: 'message', direction: 'in', provider: 'telegram', user: { id: 'u-1', name: 'Ann' }, text: 'hello' });
      assert.equal(status, 202, JSON.stringify(body));
      viewerPassword = server.addUser('vic', 'viewer');
    },
    { timeout: 60_000 },
  );

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
    await stand?.close();
  });

  const live = (page) => page.locator('.connection[data-state="live"]').waitFor({ timeout: 10_000 });
  const card = (page, service) => page.locator(`section.integration[data-service="${service}"]`);
  const collects = () => stand.got.filter((r) => r.path === '/mp/collect').length;

  test('19. settings: an admin sets GA4 up, tests it, sees events forwarded and refusals in words, sends the history, switches it off', { timeout: 60_000 }, async () => {
    // The refusals below: the browser logs their 400s and 409s.
    const t = await openPage(browser, server, {
      allowFailedRequests: [
        { path: `/api/v1/bots/${BOT}/settings`, status: 400 },
        { path: `/api/v1/bots/${BOT}/settings`, status: 409 },
        { path: `/api/v1/bots/${BOT}/integrations/mixpanel/test`, status: 400 },
        { path: `/api/v1/bots/${BOT}/integrations/mixpanel/backfill`, status: 400 },
      ],
    });
    try {
      const { page } = t;
      await page.goto(`/bots/${BOT}`);
      await live(page);
      const nav = page.getByRole('navigation', { name: 'Pages' });
      assert.equal(await textOf(nav.getByRole('link').last()), 'Settings', 'the last entry');
      await nav.getByRole('link', { name: 'Settings' }).click();
      await page.getByRole('heading', { level: 1, name: 'Settings' }).waitFor();
      assert.equal(new URL(page.url()).pathname, `/bots/${BOT}/settings`);
      assert.equal(await textOf(nav.locator('[aria-current="page"]')), 'Settings');
      await page.getByRole('heading', { level: 2, name: 'Other: analytics forwarding' }).waitFor();
      await page.getByText('from the moment they are switched on; the history from before then can be sent too, with the back-fill').waitFor();

      const ga = card(page, 'google_analytics');
      const mp = card(page, 'mixpanel');
      await ga.getByRole('heading', { name: /Google Analytics 4/ }).waitFor();
      await mp.getByRole('heading', { name: /Mixpanel/ }).waitFor();
      assert.equal(await ga.getByLabel('API secret').getAttribute('type'), 'password');
      assert.equal(await mp.getByLabel('Project token').getAttribute('type'), 'password');
      await eventually('the status of both, nothing sent yet', async () => {
        assert.equal(await textOf(ga.locator('.forwarding-status .sent')), 'Sent 0 events');
        assert.equal(await textOf(mp.locator('.forwarding-status .sent')), 'Sent 0 events');
      });
      assert.match(await textOf(ga.locator('.forwarding-status .skipped')), /^Skipped 0 \(GA4 does not take events older than 72 hours\)$/);
      assert.equal(await textOf(ga.locator('.forwarding-status .last')), 'No delivery yet');

      // Refused by the server, in words: Active without the credentials; a test of a
      // service that is not configured.
      await mp.getByLabel('Active').check();
      await mp.getByRole('button', { name: 'Save' }).click();
      await eventually('the refusal of Active without a token', async () => {
        assert.equal(await textOf(mp.locator('form .error')), 'Not saved: Active (Mixpanel): needs a Project token; neither this request nor the stored settings give it');
      });
      await mp.getByRole('button', { name: 'Send test event' }).click();
      await eventually('the refusal of a test of a service not configured', async () => {
        assert.equal(await textOf(mp.locator('.test-event .error')), 'No test event sent: integrations: mixpanel is not configured (Settings → Other)');
      });
      await mp.getByLabel('Active').uncheck();

      // GA4 set up and switched on.
      await ga.getByLabel('Measurement ID').fill('G-TEST1234');
      await ga.getByLabel('API secret').fill(SECRET);
      await ga.getByLabel('Active').check();
      await ga.getByRole('button', { name: 'Save' }).click();
      await ga.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
      const stored = (await server.api(`/api/v1/bots/${BOT}/settings`)).integrations.google_analytics;
      assert.deepEqual(stored, { measurement_id: 'G-TEST1234', api_secret: `********${SECRET.slice(-4)}`, active: true }, 'stored, the secret masked');
      assert.equal(await ga.getByLabel('API secret').inputValue(), '', 'the secret field empties: empty keeps the stored one');

      // After a reload: the secret shows masked, never in the field.
      await page.reload();
      await live(page);
      await eventually('the saved settings after a reload', async () => {
        assert.equal(await ga.getByLabel('Measurement ID').inputValue(), 'G-TEST1234');
        assert.equal(await ga.getByLabel('Active').isChecked(), true);
      });
      const secretField = ga.getByLabel('API secret');
      assert.equal(await secretField.inputValue(), '');
      assert.equal(await secretField.getAttribute('placeholder'), `********${SECRET.slice(-4)}`);
      assert.match(await textOf(ga.locator('.hint')), /^Set \(\*{8}.{4}\)\. Leave empty to keep it/);
      assert.ok(!(await page.content()).includes(SECRET), 'the secret is nowhere in the page');
      await eventually('the status says it forwards', async () => {
        assert.equal(await textOf(ga.locator('h3 .state')), 'Forwarding');
      });

      // A test event: accepted by GA4's debug endpoint, with the stored credentials.
      await ga.getByRole('button', { name: 'Send test event' }).click();
      await eventually('the test accepted', async () => {
        assert.equal(await textOf(ga.locator('.test-result')), 'Test event accepted');
      });
      const debug = stand.got.filter((r) => r.path === '/debug/mp/collect');
      assert.equal(debug.length, 1);
      assert.equal(debug[0].query.measurement_id, 'G-TEST1234');
      assert.equal(debug[0].query.api_secret, SECRET);

      // Refused with a validation message: its description and field, in words.
      stand.debugAnswer = {
        validationMessages: [{ fieldPath: 'events[0].name', description: `Event name ${RUN} is reserved.`, validationCode: 'NAME_RESERVED' }],
      };
      await ga.getByRole('button', { name: 'Send test event' }).click();
      await eventually('the validation message shown', async () => {
        assert.equal(await textOf(ga.locator('.test-result p')), 'Google Analytics 4 refused the test event');
        assert.deepEqual(await ga.locator('.test-result li').allTextContents(), [`Event name ${RUN} is reserved. (field: events[0].name)`]);
      });
      stand.debugAnswer = OK_ANSWER;

      // A message ingested now is forwarded: Sent goes up (the status is read every 5 s).
      const before = collects();
      const { status } = await server.ingest({ id: `set-${RUN}-1`, bot: BOT, type: 'message', direction: 'in', provider: 'telegram', user: { id: 'u-1', name: 'Ann' }, text: 'forward me' });
      assert.equal(status, 202);
      await eventually(
        'the message forwarded, and the page says so',
        async () => {
          assert.ok(collects() > before, 'the stand-in got a POST to /mp/collect');
          assert.ok(Number(await ga.locator('.forwarding-status .sent').getAttribute('data-sent')) >= 1);
          assert.match(await textOf(ga.locator('.forwarding-status .sent')), /^Sent \d+ events?$/);
          assert.match(await textOf(ga.locator('.forwarding-status .last')), /^Last delivery: ok at \d\d:\d\d$/);
        },
        { timeout: 25_000, interval: 250 },
      );
      assert.match(await textOf(ga.locator('.forwarding-status .behind')), /^(Up to date|Behind by .+)$/);

      // The back-fill: the history (the message ingested before GA4 was on) goes out
      // after what is live. The day starts 30 days back, in the bot's zone.
      const from = ga.getByLabel('Send history from');
      assert.equal(await from.getAttribute('type'), 'date');
      const { timezone } = await server.api(`/api/v1/bots/${BOT}/settings`);
      const daysBack = (days) => new Date(Date.now() - days * 86_400_000).toLocaleDateString('en-CA', { timeZone: timezone || 'UTC' });
      assert.ok([daysBack(30), daysBack(30.01)].includes(await from.inputValue()), `30 days back: ${await from.inputValue()}`);
      assert.equal(await textOf(ga.locator('.backfill-hint')), 'GA4 takes events at most 72 hours back: older ones are counted as skipped.');
      assert.equal(await mp.locator('.backfill-hint').count(), 0, 'the 72 hours are GA4\'s alone');
      const day = daysBack(10);
      await from.fill(day);
      const beforeHistory = collects();
      await ga.getByRole('button', { name: 'Send history' }).click();
      await eventually('the back-fill queued', async () => {
        assert.equal(await textOf(ga.locator('.backfill-result')), `History from ${day} is queued: it goes out after what is live; progress shows in Sent/Skipped.`);
      });
      await eventually('the history sent to GA4', async () => assert.ok(collects() > beforeHistory, 'the stand-in got the history'), { timeout: 25_000, interval: 250 });
      // Without a day: the server's refusal, in words.
      await mp.getByLabel('Send history from').fill('');
      await mp.getByRole('button', { name: 'Send history' }).click();
      await eventually('the refusal of a back-fill without a day', async () => {
        assert.equal(await textOf(mp.locator('.backfill .error')), 'History not queued: Send history from: expected a date YYYY-MM-DD');
      });
      assert.equal(await textOf(mp.locator('.backfill-result')), '');

      // An invalid measurement id, refused in words; then Active off.
      await ga.getByLabel('Measurement ID').fill('UA-1234');
      await ga.getByRole('button', { name: 'Save' }).click();
      await eventually('the refusal of the measurement id', async () => {
        assert.equal(await textOf(ga.locator('form .error')), 'Not saved: Measurement ID: a GA4 measurement id like G-XXXXXXX, or null');
      });
      await ga.getByLabel('Measurement ID').fill('G-TEST1234');
      await ga.getByLabel('Active').uncheck();
      await ga.getByRole('button', { name: 'Save' }).click();
      await ga.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
      assert.equal(await ga.locator('form .error').count(), 0, 'the refusal is gone');
      await page.reload();
      await live(page);
      await eventually('Active unticked after a reload, the secret still stored', async () => {
        assert.equal(await ga.getByLabel('Measurement ID').inputValue(), 'G-TEST1234');
        assert.equal(await ga.getByLabel('Active').isChecked(), false);
        assert.equal(await ga.getByLabel('API secret').getAttribute('placeholder'), `********${SECRET.slice(-4)}`);
        assert.equal(await textOf(ga.locator('h3 .state')), 'Off');
      });
      const off = (await server.api(`/api/v1/bots/${BOT}/settings`)).integrations.google_analytics;
      assert.deepEqual(off, { measurement_id: 'G-TEST1234', api_secret: `********${SECRET.slice(-4)}`, active: false });
      t.assertClean();
    } finally {
      await t.close();
    }
  });

  test('20. settings: a viewer sees the settings and the status, without Save, test or back-fill buttons', { timeout: 30_000 }, async () => {
    const v = await openPage(browser, server, { loggedIn: false });
    try {
      const { page } = v;
      const res = await page.context().request.post('/api/v1/session', { data: { username: 'vic', password: viewerPassword } });
      assert.equal(res.status(), 200);
      await page.goto(`/bots/${BOT}`);
      await live(page);
      await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Settings' }).click();
      await page.getByRole('heading', { level: 1, name: 'Settings' }).waitFor();
      const ga = card(page, 'google_analytics');
      await eventually('the settings, read-only', async () => {
        assert.equal(await ga.getByLabel('Measurement ID').inputValue(), 'G-TEST1234');
        assert.equal(await ga.getByLabel('Measurement ID').isDisabled(), true);
        assert.equal(await ga.getByLabel('API secret').isDisabled(), true);
        assert.equal(await ga.getByLabel('Active').isDisabled(), true);
      });
      await eventually('the forwarding status', async () => {
        assert.match(await textOf(ga.locator('.forwarding-status .sent')), /^Sent [1-9]\d* events?$/);
      });
      await page.getByText('Admins change these settings').waitFor();
      assert.equal(await page.getByRole('button', { name: 'Save' }).count(), 0, 'no Save');
      assert.equal(await page.getByRole('button', { name: 'Send test event' }).count(), 0, 'no test');
      assert.equal(await page.getByRole('button', { name: 'Send history' }).count(), 0, 'no back-fill');
      assert.equal(await page.getByLabel('Send history from').count(), 0, 'no back-fill day');
      v.assertClean();
    } finally {
      await v.close();
    }
  });
});
