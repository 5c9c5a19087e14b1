// The Audience and Broadcasts pages against a real `botwatch serve`: users ingested as a
// bot sends them (two with Cyrillic names, three providers), a role and a tag made
// through the API; then, in the browser, as an operator: the filters and their counts,
// a Cyrillic search, one user's edit in the form, a bulk change, the read-only view of
// a viewer, and a broadcast to all users followed to its end.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { after, before, describe, test } from 'node:test';
import { eventually, launchBrowser, openPage, textOf } from './browser.mjs';
import { startServer } from './server.mjs';

const BOT = 'crm';
const RUN = randomBytes(4).toString('hex');
let serial = 0;

const OLENA = { id: 'c-olena', name: 'Олена Коваль' };
const IVAN = { id: 'c-ivan', name: 'Іван Петренко' };
const JOHN = { id: 'c-john', name: 'John Smith' };
const MIA = { id: 'c-mia', name: 'Mia Wong' };
const OREST = { id: 'c-orest', name: 'Орест' };
const USERS = [
  [OLENA, 'telegram'],
  [IVAN, 'telegram'],
  [JOHN, 'webchat'],
  [MIA, 'webchat'],
  [OREST, 'viber'],
];
const PROVIDER = Object.fromEntries(USERS.map(([u, p]) => [u.id, p]));

describe('audience and broadcasts', () => {
  let server;
  let browser;
  let viewerPassword;

  /** The API as the admin token sees it (to set up and to cross-check). */
  const api = async (method, path, body) => {
    const res = await fetch(server.base + path, {
      method,
      headers: { Authorization: `Bearer ${server.token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };

  before(
    async () => {
      server = await startServer({ username: 'olga', role: 'operator' });
      browser = await launchBrowser();
      const { status, body } = await server.ingest(
        USERS.map(([user, provider]) => ({ id: `aud-${RUN}-${++serial}`, bot: BOT, type: 'message', direction: 'in', provider, user, text: 'hello' })),
      );
      assert.equal(status, 202, JSON.stringify(body));
      // A role and a tag, each already on one user, so a count going up is seen to.
      await api('POST', `/api/v1/bots/${BOT}/roles`, { name: 'VIP' });
      await api('POST', `/api/v1/bots/${BOT}/tags`, { name: 'lead' });
      await api('POST', `/api/v1/bots/${BOT}/users/bulk`, { ids: [MIA.id], set: { role: 'VIP' } });
      await api('POST', `/api/v1/bots/${BOT}/users/bulk`, { ids: [JOHN.id], add_tags: ['lead'] });
      viewerPassword = server.addUser('vera', 'viewer');
    },
    { timeout: 60_000 },
  );

  after(async () => {
    await browser?.close().catch(() => {});
    await server?.stop();
  });

  const live = (page) => page.locator('.connection[data-state="live"]').waitFor({ timeout: 10_000 });
  /** A tab logged in as the viewer, on `path`, live. */
  const asViewer = async (path) => {
    const v = await openPage(browser, server, { loggedIn: false });
    const res = await v.page.context().request.post('/api/v1/session', { data: { username: 'vera', password: viewerPassword } });
    assert.equal(res.status(), 200);
    await v.page.goto(path);
    await live(v.page);
    return v;
  };
  const rowIds = (page) => page.locator('table.audience-table tbody tr').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-user')));
  const total = (page) => page.locator('#audience-h .total').getAttribute('data-total').then(Number);
  const facet = (page, group, value) => page.locator(`.filters fieldset[data-facet="${group}"] label[data-value="${value}"]`);
  const count = async (page, group, value) => {
    const label = facet(page, group, value);
    return (await label.count()) ? Number(await textOf(label.locator('.count'))) : 0;
  };
  /** Every count the left column shows, as { 'provider:telegram': 2, …, subscriber: 5 }. */
  const counts = (page) =>
    page.locator('.filters fieldset[data-facet] label[data-value]').evaluateAll((ls) =>
      Object.fromEntries(
        ls
          .filter((l) => l.querySelector('.count'))
          .map((l) => {
            const group = l.closest('fieldset').getAttribute('data-facet');
            return [group === 'subscriber' ? 'subscriber' : `${group}:${l.getAttribute('data-value')}`, Number(l.querySelector('.count').textContent)];
          }),
      ),
    );
  const ALL = USERS.map(([u]) => u.id).sort();

  test('15. audience: a provider narrows the table, a Cyrillic search finds her, her edit moves the counts', { timeout: 45_000 }, async () => {
    // The refused edit at the end: the browser logs the 400.
    const t = await openPage(browser, server, { allowFailedRequests: [{ path: `/api/v1/bots/${BOT}/users/${IVAN.id}`, status: 409 }] });
    try {
      const { page } = t;
      await page.goto(`/bots/${BOT}/audience`);
      await live(page);
      await page.getByRole('heading', { level: 1, name: /^Audience/ }).waitFor();
      assert.equal(await page.getByRole('navigation', { name: 'Pages' }).locator('[aria-current="page"]').textContent(), 'Audience');
      await eventually('every user, with the counts', async () => {
        assert.deepEqual((await rowIds(page)).sort(), ALL);
        assert.equal(await total(page), 5);
        assert.deepEqual(await counts(page), {
          'provider:telegram': 2,
          'provider:viber': 1,
          'provider:webchat': 2,
          'tag:lead': 1,
          'role:VIP': 1,
          subscriber: 5,
        });
      });
      assert.equal(await textOf(page.locator(`tr[data-user="${MIA.id}"] td.role`)), 'VIP');
      assert.equal(await textOf(page.locator(`tr[data-user="${JOHN.id}"] td.tags`)), 'lead');
      assert.equal(await page.locator(`tr[data-user="${OREST.id}"] td.provider-cell`).getAttribute('data-provider'), 'viber');
      assert.match(await textOf(page.locator(`tr[data-user="${OREST.id}"] td.provider-cell`)), /^VB Viber$/, 'its mark and its name');

      // A provider: the table narrows, the total follows; the provider group's own
      // counts stay (a group's counts leave its own filter out), the others' follow.
      await facet(page, 'provider', 'telegram').getByRole('checkbox').check();
      await eventually('only Telegram users', async () => {
        assert.deepEqual((await rowIds(page)).sort(), [IVAN.id, OLENA.id].sort());
        assert.equal(await total(page), 2);
        assert.equal(await count(page, 'provider', 'webchat'), 2);
        assert.equal(await count(page, 'role', 'VIP'), 0, 'no Telegram user has the role');
        assert.equal(await count(page, 'subscriber', 'true'), 2);
      });
      assert.match(await page.getByRole('link', { name: 'Export CSV' }).getAttribute('href'), new RegExp(`^/api/v1/bots/${BOT}/users\\.csv\\?provider=telegram$`));
      // A second provider ORs with the first.
      await facet(page, 'provider', 'viber').getByRole('checkbox').check();
      await eventually('Telegram or Viber users', async () => assert.equal(await total(page), 3));
      await page.getByRole('button', { name: 'Clear all filters' }).click();
      await eventually('everyone again', async () => assert.equal(await total(page), 5));

      // Search in lower case finds the name written with capitals, in Cyrillic.
      await page.getByRole('searchbox', { name: 'Search by name' }).fill('олена');
      await eventually('only Олена', async () => {
        assert.deepEqual(await rowIds(page), [OLENA.id]);
        assert.equal(await total(page), 1);
      });
      const before = await counts(page);
      assert.deepEqual([before['role:VIP'], before['tag:lead'], before.subscriber], [0, 0, 1]);

      // Her form: a role, an existing tag and a new one, Subscriber off, a phone.
      await page.locator(`tr[data-user="${OLENA.id}"]`).getByRole('button', { name: OLENA.name }).click();
      const form = page.getByRole('dialog', { name: OLENA.name });
      await form.getByLabel('Name', { exact: true }).waitFor();
      assert.equal(await form.getByLabel('Name', { exact: true }).inputValue(), OLENA.name);
      assert.match(await textOf(form.locator('.facts')), /Telegram/);
      assert.match(await textOf(form.locator('.facts')), /Auto: the bot answers · last seen \d\d:\d\d/);
      assert.equal(await form.getByRole('button', { name: 'Save' }).isDisabled(), true, 'nothing to save yet');
      await form.getByLabel('Role', { exact: true }).selectOption('VIP');
      const tagInput = form.getByRole('combobox', { name: 'Add a tag' });
      await tagInput.fill('lead');
      await form.getByRole('button', { name: 'Add tag', exact: true }).click();
      await tagInput.fill('кава');
      await tagInput.press('Enter');
      assert.deepEqual(await form.locator('.chips li.chip').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-tag'))), ['lead', 'кава']);
      assert.match(await textOf(form.locator('li.chip[data-tag="кава"]')), /\(new\)/);
      const subscriber = form.getByRole('checkbox', { name: 'Subscriber', exact: true });
      assert.equal(await subscriber.isChecked(), true);
      await subscriber.uncheck();
      await form.getByLabel('Phone').fill('+380 67 000 00 00');
      await form.getByRole('button', { name: 'Save' }).click();
      await form.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();

      // The counts moved (the role's and the tag's up by one, subscribers down by
      // one) and the row shows what was set.
      await eventually('the counts after the edit', async () => {
        const after = await counts(page);
        assert.equal(after['role:VIP'], before['role:VIP'] + 1);
        assert.equal(after['tag:lead'], before['tag:lead'] + 1);
        assert.equal(after['tag:кава'], 1, 'the new tag, created before the edit');
        assert.equal(after.subscriber, before.subscriber - 1);
      });
      const row = page.locator(`tr[data-user="${OLENA.id}"]`);
      assert.equal(await textOf(row.locator('td.role')), 'VIP');
      assert.deepEqual(await row.locator('td.tags li').allTextContents(), ['lead', 'кава']);
      assert.equal(await row.locator('td.subscriber').getAttribute('data-subscriber'), 'false');
      assert.equal(await textOf(row.locator('td[data-field="phone"]')), '+380 67 000 00 00');
      assert.equal(await textOf(page.locator('table.audience-table th[data-field="phone"]')), 'Phone');

      // What the server holds.
      const profile = await api('GET', `/api/v1/bots/${BOT}/users/${OLENA.id}`);
      assert.deepEqual(
        { role: profile.role, tags: [...profile.tags].sort(), subscriber: profile.subscriber, phone: profile.fields.phone, mode: profile.mode },
        { role: 'VIP', tags: ['lead', 'кава'].sort(), subscriber: false, phone: '+380 67 000 00 00', mode: 'auto' },
      );

      // Without the search, the bot's counts: up and down by one from the start.
      await form.getByRole('button', { name: 'Close' }).click();
      assert.equal(await page.getByRole('dialog').count(), 0);
      await page.getByRole('searchbox', { name: 'Search by name' }).fill('');
      await eventually('every user, with the new counts', async () => {
        assert.equal(await total(page), 5);
        const after = await counts(page);
        assert.deepEqual([after['role:VIP'], after['tag:lead'], after['tag:кава'], after.subscriber], [2, 2, 1, 4]);
      });

      // A server error in words: the role deleted meanwhile elsewhere.
      await api('POST', `/api/v1/bots/${BOT}/roles`, { name: 'Temp' });
      await page.getByRole('button', { name: IVAN.name }).click();
      const ivan = page.getByRole('dialog', { name: IVAN.name });
      await ivan.getByLabel('Role', { exact: true }).locator('option', { hasText: 'Temp' }).waitFor({ state: 'attached' });
      await ivan.getByLabel('Role', { exact: true }).selectOption('Temp');
      await api('DELETE', `/api/v1/bots/${BOT}/roles/Temp`);
      await ivan.getByRole('button', { name: 'Save' }).click();
      await eventually('the refusal', async () => assert.match(await textOf(ivan.getByRole('alert')), /^Not saved: the bot has no role "Temp"/));
      await page.keyboard.press('Escape');
      assert.equal(await page.getByRole('dialog').count(), 0, 'Escape closes the form');

      t.assertClean();
    } finally {
      await t.close();
    }
  });

  test('16. audience: a bulk change of all matching users; roles and tags managed; a viewer only reads', { timeout: 45_000 }, async () => {
    const t = await openPage(browser, server);
    try {
      const { page } = t;
      await page.goto(`/bots/${BOT}/audience`);
      await live(page);
      await eventually('every user', async () => assert.equal(await total(page), 5));

      // Web chat users, all matching: the tag "lead" added (John had it already).
      await facet(page, 'provider', 'webchat').getByRole('checkbox').check();
      await eventually('web chat users', async () => assert.equal(await total(page), 2));
      const bulk = page.getByRole('group', { name: 'Change several users' });
      await bulk.getByRole('checkbox', { name: /Select all 2 matching/ }).check();
      assert.equal(await textOf(bulk.locator('.selected-count')), '2 users selected');
      await bulk.getByRole('combobox', { name: 'Change' }).selectOption('add-tag');
      await bulk.getByRole('combobox', { name: 'Tag' }).selectOption('lead');
      await bulk.getByRole('button', { name: 'Apply' }).click();
      await bulk.getByRole('status').filter({ hasText: 'Updated 2 users.' }).waitFor();
      await eventually('both carry the tag', async () => {
        for (const id of [JOHN.id, MIA.id]) assert.deepEqual(await page.locator(`tr[data-user="${id}"] td.tags li`).allTextContents(), ['lead']);
      });

      // The CSV of what the filters let through.
      const [download] = await Promise.all([page.waitForEvent('download', { timeout: 10_000 }), page.getByRole('link', { name: 'Export CSV' }).click()]);
      const csv = (await readFile(await download.path(), 'utf8')).replace(/^\uFEFF/, '').split('\r\n');
      assert.match(csv[0], /^id,name,provider,gender,role,tags,subscriber,mode,/);
      assert.deepEqual(csv.slice(1).filter(Boolean).map((l) => l.split(',')[0]).sort(), [JOHN.id, MIA.id].sort(), 'the web chat users only');

      // Ticked rows: Mia alone in Manual mode.
      await page.getByRole('checkbox', { name: `Select ${MIA.name}` }).check();
      await bulk.getByRole('combobox', { name: 'Change' }).selectOption('auto-off');
      await bulk.getByRole('button', { name: 'Apply' }).click();
      await bulk.getByRole('status').filter({ hasText: 'Updated 1 user.' }).waitFor();
      await eventually('Mia in Manual mode', async () => assert.equal(await page.locator(`tr[data-user="${MIA.id}"] td.mode`).getAttribute('data-mode'), 'manual'));
      assert.equal((await api('GET', `/api/v1/bots/${BOT}/users/${MIA.id}`)).mode, 'manual');
      assert.equal((await api('GET', `/api/v1/bots/${BOT}/users/${JOHN.id}`)).mode, 'auto');

      // Roles and tags: one made, renamed, deleted.
      await page.getByText('Manage roles and tags').click();
      const roles = page.getByRole('region', { name: 'Roles' });
      await roles.getByRole('textbox', { name: 'New role' }).fill('Staff');
      await roles.getByRole('button', { name: 'Create' }).click();
      await roles.locator('li[data-label="Staff"]').waitFor();
      await roles.getByRole('button', { name: 'Rename role Staff' }).click();
      await roles.getByRole('textbox', { name: 'New name for role Staff' }).fill('Team');
      await roles.getByRole('button', { name: 'Save' }).click();
      await roles.locator('li[data-label="Team"]').waitFor();
      await facet(page, 'role', 'Team').waitFor();
      await roles.getByRole('button', { name: 'Delete role Team' }).click();
      await roles.getByRole('button', { name: 'Delete', exact: true }).click();
      await eventually('the role is gone', async () => {
        assert.equal(await roles.locator('li[data-label="Team"]').count(), 0);
        assert.equal(await facet(page, 'role', 'Team').count(), 0);
      });
      assert.deepEqual((await api('GET', `/api/v1/bots/${BOT}/roles`)).map((r) => r.name), ['VIP']);
      t.assertClean();
    } finally {
      await t.close();
    }

    // A viewer sees the same, changes nothing.
    const v = await asViewer(`/bots/${BOT}/audience`);
    try {
      const { page } = v;
      await eventually('every user', async () => assert.equal(await total(page), 5));
      assert.equal(await page.getByRole('group', { name: 'Change several users' }).count(), 0, 'no bulk changes');
      assert.equal(await page.locator('table.audience-table input[type="checkbox"]').count(), 0, 'no row to tick');
      assert.equal(await page.getByText('Manage roles and tags').count(), 0);
      await page.getByRole('button', { name: OLENA.name }).click();
      const form = page.getByRole('dialog', { name: OLENA.name });
      await form.getByLabel('Name', { exact: true }).waitFor();
      assert.equal(await form.getByLabel('Name', { exact: true }).isDisabled(), true);
      assert.equal(await form.getByRole('button', { name: 'Save' }).count(), 0);
      assert.equal(await form.getByRole('button', { name: /^Remove tag/ }).count(), 0);
      v.assertClean();
    } finally {
      await v.close();
    }
  });

  test('17. broadcasts: a text to all users runs to its end, live; a long one is cancelled; no recipient is refused in words', { timeout: 45_000 }, async () => {
    const t = await openPage(browser, server, { allowFailedRequests: [{ path: `/api/v1/bots/${BOT}/broadcasts`, status: 409 }] });
    try {
      const { page } = t;
      await page.goto(`/bots/${BOT}/broadcasts`);
      await live(page);
      await page.getByText('No broadcasts yet.').waitFor();
      const recipients = page.locator('.recipients');
      // Subscribers by default: all but Олена.
      await eventually('subscribers counted', async () => assert.equal(await recipients.getAttribute('data-recipients'), '4'));

      // Subscribers with the tag only Олена has: nobody; the server says so.
      await page.locator('fieldset[data-facet="tag"] button[data-value="кава"]').click();
      await eventually('nobody', async () => assert.equal(await recipients.getAttribute('data-recipients'), '0'));
      await page.getByLabel('Message').fill('Nobody gets this');
      await page.getByRole('button', { name: 'Send' }).click();
      await eventually('the refusal', async () => assert.match(await textOf(page.getByRole('alert')), /^Not sent: no user matches/));
      await page.locator('fieldset[data-facet="tag"] button[data-value="кава"]').click();

      // All users: five, whatever their flag.
      await page.getByRole('radio', { name: 'All users' }).check();
      await eventually('all users counted', async () => assert.equal(await recipients.getAttribute('data-recipients'), '5'));
      const text = 'Our shop opens at 9 tomorrow';
      await page.getByLabel('Message').fill(text);
      await page.getByRole('button', { name: 'Send to 5 users' }).click();
      await page.getByRole('status').filter({ hasText: 'Broadcast started: 5 recipients.' }).waitFor();

      const item = page.locator('li.broadcast', { hasText: text });
      await item.waitFor();
      // Users without a channel botwatch can deliver to fail (Telegram, Viber: no token,
      // no webhook); Mia is in Manual mode: skipped. Whatever each outcome, they add up.
      await eventually(
        'the broadcast ends',
        async () => {
          assert.equal(await item.getAttribute('data-state'), 'done');
          const n = async (f) => Number((await textOf(item.locator(`[data-figure="${f}"]`))).replace(/\D/g, ''));
          const [sent, failed, skipped, all] = [await n('sent'), await n('failed'), await n('skipped'), await n('total')];
          assert.equal(all, 5);
          assert.equal(sent + failed + skipped, all, `${sent} sent + ${failed} failed + ${skipped} skipped`);
          assert.ok(failed >= 3, 'the Telegram and Viber users failed');
          assert.equal(skipped, 1, 'Mia, in Manual mode, skipped');
        },
        { timeout: 20_000 },
      );
      assert.equal(await textOf(item.locator('.state')), 'Done');
      assert.equal(await item.getByRole('button', { name: 'Cancel' }).count(), 0, 'nothing to cancel once done');
      assert.match(await textOf(item.locator('.meta')), /by olga · to all users/);

      // Its failures, and why.
      await item.getByRole('button', { name: text }).click();
      await eventually('the failures', async () => {
        const failed = await item.locator('.failures tbody tr').evaluateAll((rs) => rs.map((r) => r.getAttribute('data-user')));
        for (const id of [OLENA.id, IVAN.id, OREST.id]) assert.ok(failed.includes(id), `${id} (${PROVIDER[id]}) failed`);
      });
      assert.match(await textOf(item.locator(`.failures tr[data-user="${OREST.id}"] td.text`)), /viber/);

      // A long one (another bot: 150 Viber users at Viber's pace) cancelled while it runs.
      const many = Array.from({ length: 150 }, (_, i) => ({
        id: `aud-${RUN}-${++serial}`,
        bot: 'news',
        type: 'message',
        direction: 'in',
        provider: 'viber',
        user: { id: `n-${i}`, name: `Reader ${i}` },
        text: 'hi',
      }));
      assert.equal((await server.ingest(many)).status, 202);
      await page.goto('/bots/news/broadcasts');
      await live(page);
      await eventually('the readers counted', async () => assert.equal(await recipients.getAttribute('data-recipients'), '150'));
      await page.getByLabel('Message').fill('Weekly news');
      await page.getByRole('button', { name: 'Send to 150 users' }).click();
      const running = page.locator('li.broadcast', { hasText: 'Weekly news' });
      await running.locator('[data-figure="failed"]').filter({ hasNotText: /^0 / }).waitFor();
      await running.getByRole('button', { name: 'Cancel the broadcast' }).click();
      await running.and(page.locator('[data-state="cancelled"]')).waitFor();
      assert.equal(await textOf(running.locator('.state')), 'Cancelled');
      assert.equal(await running.getByRole('button', { name: 'Cancel the broadcast' }).count(), 0);
      const failed = Number((await textOf(running.locator('[data-figure="failed"]'))).replace(/\D/g, ''));
      assert.ok(failed > 0 && failed < 150, `stopped part way: ${failed} of 150`);
      assert.equal((await api('GET', `/api/v1/bots/news/broadcasts`))[0].state, 'cancelled');
      t.assertClean();
    } finally {
      await t.close();
    }

    // A viewer follows the broadcasts, starts and cancels none.
    const v = await asViewer(`/bots/${BOT}/broadcasts`);
    try {
      const { page } = v;
      await page.locator('li.broadcast[data-state="done"]').first().waitFor();
      assert.equal(await page.getByRole('heading', { name: 'New broadcast' }).count(), 0, 'no composer');
      assert.equal(await page.getByRole('button', { name: 'Cancel the broadcast' }).count(), 0);
      v.assertClean();
    } finally {
      await v.close();
    }
  });

  test('18. audience: 150 users page by 50 with More, sorted by name either way', { timeout: 30_000 }, async () => {
    const t = await openPage(browser, server);
    try {
      const { page } = t;
      await page.goto('/bots/news/audience');
      await live(page);
      await eventually('the first page', async () => {
        assert.equal(await total(page), 150);
        assert.equal((await rowIds(page)).length, 50);
      });
      assert.equal(await textOf(page.locator('.pager span')), 'Showing 50 of 150');
      await page.getByRole('combobox', { name: 'Sort by' }).selectOption('name');
      assert.equal(await page.getByRole('combobox', { name: 'Order' }).inputValue(), 'asc');
      const names = () => page.locator('table.audience-table tbody tr button.name').allTextContents();
      const expected = Array.from({ length: 150 }, (_, i) => `Reader ${i}`).sort((a, b) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1));
      await eventually('A to Z', async () => assert.deepEqual(await names(), expected.slice(0, 50)));
      await page.getByRole('button', { name: 'More' }).click();
      await eventually('the second page after the first', async () => assert.deepEqual(await names(), expected.slice(0, 100)));
      await page.getByRole('button', { name: 'More' }).click();
      await eventually('all of them', async () => assert.deepEqual(await names(), expected));
      assert.equal(await page.getByRole('button', { name: 'More' }).count(), 0, 'no more to read');
      await page.getByRole('combobox', { name: 'Order' }).selectOption('desc');
      await eventually('Z to A', async () => assert.deepEqual(await names(), [...expected].reverse().slice(0, 50)));
      t.assertClean();
    } finally {
      await t.close();
    }
  });
});
