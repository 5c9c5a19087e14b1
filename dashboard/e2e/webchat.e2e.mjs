// The whole loop in two browser tabs, on `botwatch demo`: a person writes in the web
// chat and the demo's FAQ bot answers; an operator takes the dialog over in the
// dashboard and writes a text and a card, which the chat shows; the bot stays silent
// meanwhile; handed back, the bot answers again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { eventually, launchBrowser, openPage, textOf } from './browser.mjs';
import { startServer } from './server.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ username: 'anna', role: 'operator', command: 'demo' });
  browser = await launchBrowser();
  // The FAQ bot enables the chat once the demo answers.
  await eventually('the web chat is on', async () => {
    const res = await fetch(`${server.base}/chat/helpdesk`);
    assert.equal(res.status, 200);
  }, { timeout: 15_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test('13. web chat: the bot answers, an operator takes over with a text and a card, the bot answers again when handed back', { timeout: 60_000 }, async () => {
  const chat = await openPage(browser, server, { loggedIn: false });
  const op = await openPage(browser, server);
  try {
    const c = chat.page;
    await c.goto('/chat/helpdesk');
    await c.getByRole('status').filter({ hasText: 'Online' }).waitFor();
    const say = async (text) => {
      await c.getByRole('textbox', { name: 'Message' }).fill(text);
      await c.getByRole('button', { name: 'Send' }).click();
    };
    const bot = c.locator('li.msg.out[data-sender="bot"]');
    const operator = c.locator('li.msg.out[data-sender="operator"]');

    // Auto: the FAQ bot answers.
    await say('Hello there');
    await c.locator('li.msg.in', { hasText: 'Hello there' }).waitFor();
    await bot.filter({ hasText: 'FAQ bot' }).waitFor({ timeout: 10_000 });
    const user = await c.evaluate(() => localStorage.getItem('botwatch.chat.helpdesk'));
    assert.match(user, /^wc-[0-9a-f]{32}$/);

    // The operator opens the dialog and takes it over.
    const p = op.page;
    await p.goto(`/bots/helpdesk/dialogs/${user}`);
    const view = p.locator('section.view');
    await view.locator('li.message', { hasText: 'Hello there' }).waitFor();
    await p.getByRole('button', { name: /Take over/ }).click();
    await view.locator('header [data-mode="manual"]').waitFor({ timeout: 5000 });

    // A text, then a card: the chat shows both, from the operator.
    const composer = view.getByLabel(/^Message to /);
    await composer.fill('Hi, Anna from the team here. How can I help?');
    await composer.press('Enter');
    await operator.filter({ hasText: 'Anna from the team' }).waitFor({ timeout: 10_000 });
    await view.locator('li.message.operator[data-delivery="sent"]').first().waitFor({ timeout: 10_000 });

    await view.getByRole('button', { name: 'Compose a card' }).click();
    const builder = view.getByRole('form', { name: 'Card' });
    await builder.getByLabel('Title', { exact: true }).fill('Order #12');
    await builder.getByLabel('Subtitle').fill('Shipped today');
    await builder.getByRole('button', { name: 'Add a button' }).click();
    await builder.getByLabel('Button 1 title').fill('Track');
    await builder.getByLabel('Button 1 payload').fill('track 12');
    await builder.getByRole('button', { name: 'Send card' }).click();
    const card = operator.locator('.card');
    await card.waitFor({ timeout: 10_000 });
    assert.equal(await textOf(card.locator('strong')), 'Order #12');
    assert.match(await textOf(card), /Shipped today/);
    assert.equal(await card.getByRole('button', { name: 'Track' }).count(), 1);

    // Manual: the user's messages reach the operator, not the bot.
    const answersBefore = await bot.count();
    await say('When are you open?');
    await view.locator('li.message', { hasText: 'When are you open?' }).waitFor({ timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await bot.count(), answersBefore, 'the bot answered a dialog in Manual mode');

    // Handed back: the bot answers again.
    await p.getByRole('button', { name: /Hand back to the bot/ }).click();
    await view.locator('header [data-mode="auto"]').waitFor({ timeout: 5000 });
    await say('When are you open?');
    await bot.filter({ hasText: 'Monday to Friday' }).waitFor({ timeout: 10_000 });
    await eventually('the bot answered once', async () => assert.equal(await bot.count(), answersBefore + 1));
    chat.assertClean();
    // The demo's simulated users have avatars on example.org, which cannot load here.
    assert.deepEqual(op.consoleErrors.filter((e) => !e.includes('@ https://example.org/avatars/')), []);
    assert.deepEqual(op.pageErrors, []);
    assert.deepEqual(op.dialogs, []);
  } finally {
    await chat.close();
    await op.close();
  }
});
