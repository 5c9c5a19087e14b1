// Screenshots of every page for docs/: runs `botwatch demo` (its simulator makes the
// traffic) on a fresh data folder, logs in as its admin and photographs each page.
//   node tools/screenshots.mjs            (from dashboard/; BOTWATCH_BIN to pick a binary)
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const root = resolve(import.meta.dirname, '../..');
const bin = process.env.BOTWATCH_BIN ?? join(root, 'target/debug/botwatch');
const out = join(root, 'docs/screenshots');

const port = await new Promise((ok) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => ok(port));
  });
});
const data = mkdtempSync(join(tmpdir(), 'botwatch-shots-'));
const demo = spawn(bin, ['demo', '--data', data, '--listen', `127.0.0.1:${port}`], { env: { ...process.env, BOTWATCH_LOG: 'warn' } });
let printed = '';
const password = await new Promise((ok, fail) => {
  demo.stdout.on('data', (b) => {
    printed += b;
    const m = /password (\S+)/.exec(printed);
    if (m) ok(m[1]);
  });
  demo.on('exit', (code) => fail(new Error(`botwatch demo exited (${code}): ${printed}`)));
});
const base = `http://127.0.0.1:${port}`;
// Let the simulator talk for a while so every page has something to show.
await new Promise((r) => setTimeout(r, 20_000));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  await page.goto(`${base}/login`);
  await page.screenshot({ path: join(out, 'login.png') });
  await page.fill('input[name=username]', 'demo');
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await page.waitForSelector('.connection[data-state=live]');
  const bot = 'helpdesk';
  const shots = [
    ['main', `/bots/${bot}`, 'tr[data-user]'],
    ['dialogs', `/bots/${bot}/dialogs`, 'li[data-user]'],
    ['audience', `/bots/${bot}/audience`, 'table.audience-table tbody tr'],
    ['broadcasts', `/bots/${bot}/broadcasts`, '.recipients:not([data-recipients=""])'],
    ['statistics', `/bots/${bot}/statistics`, '.figures-table tbody tr'],
    ['statistics-messages', `/bots/${bot}/statistics/messages`, '.figures-table tbody tr'],
    ['statistics-users', `/bots/${bot}/statistics/users`, '.figures-table tbody tr'],
    ['statistics-sessions', `/bots/${bot}/statistics/sessions`, '.figures-table tbody tr'],
    ['settings', `/bots/${bot}/settings`, '.integration .forwarding-status .sent'],
  ];
  for (const [name, path, ready] of shots) {
    await page.goto(base + path);
    await page.waitForSelector(ready);
    await page.waitForTimeout(500);
    await page.screenshot({ path: join(out, `${name}.png`) });
  }
  // A user's edit form on the Audience page.
  await page.goto(`${base}/bots/${bot}/audience`);
  await page.click('table.audience-table tbody tr button.name');
  await page.waitForSelector('.editor form');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(out, 'audience-edit.png') });
  // A dialog: the first one with a few messages.
  await page.goto(`${base}/bots/${bot}/dialogs`);
  await page.click('li[data-user] a');
  await page.waitForSelector('li.message');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(out, 'dialog.png') });
  // The wall board at 1080p.
  const board = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  await board.context().addCookies(await page.context().cookies());
  await board.goto(`${base}/bots/${bot}/board`);
  await board.waitForSelector('.board .latest li');
  await board.waitForTimeout(500);
  await board.screenshot({ path: join(out, 'board.png') });
  // Taking over: a person in the web chat asks for a person; the FAQ bot hands off, the
  // banner shows it; an operator takes the dialog over and writes.
  const chat = await browser.newPage({ viewport: { width: 480, height: 760 } });
  await chat.goto(`${base}/chat/${bot}`);
  await chat.getByRole('status').filter({ hasText: 'Online' }).waitFor();
  await chat.getByRole('textbox', { name: 'Message' }).fill('Hi! Can I talk to a person, please?');
  await chat.getByRole('button', { name: 'Send' }).click();
  await chat.waitForSelector('li.msg.out[data-sender="bot"]');
  const user = await chat.evaluate(() => localStorage.getItem('botwatch.chat.helpdesk'));
  await page.goto(`${base}/bots/${bot}/dialogs/${user}`);
  await page.getByRole('button', { name: /Take over/ }).click();
  await page.locator('section.view header [data-mode="manual"]').waitFor();
  const composer = page.locator('section.view').getByLabel(/^Message to /);
  await composer.fill('Hello, Anna from the team here. How can I help?');
  await composer.press('Enter');
  await page.locator('li.message.operator[data-delivery="sent"]').waitFor();
  await chat.waitForSelector('li.msg.out[data-sender="operator"]');
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(out, 'takeover.png') });
  await chat.screenshot({ path: join(out, 'webchat.png') });
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  demo.kill('SIGTERM');
  rmSync(data, { recursive: true, force: true });
}
