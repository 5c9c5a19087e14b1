// Chromium for the end-to-end tests, pages that record every page error and console
// error, and `eventually`: an assertion retried until it holds or time runs out.

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-quic',
      '--no-first-run',
      '--disable-component-update',
      '--disable-sync',
      // No name resolves: the machine has no network, and an avatar on
      // https://example.invalid/… must fail at once rather than wait for a DNS timeout.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
    ],
  });
}

/** Avatar and image addresses the test data uses; only their failed loads are expected. */
export const UNREACHABLE = 'https://example.invalid/';

/**
 * A fresh context and page. Every uncaught page error, every console error and every
 * `dialog` (alert, confirm, prompt) is recorded; `assertClean()` fails the test on any
 * of them except failed loads of https://example.invalid/… images and the answers
 * listed in `allowFailedRequests` (e.g. the 401 of GET /api/v1/session before login).
 */
export async function openPage(browser, server, { loggedIn = true, allowFailedRequests = [] } = {}) {
  const context = await browser.newContext({ baseURL: server.base, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const pageErrors = [];
  const consoleErrors = [];
  const dialogs = [];
  page.on('pageerror', (e) => pageErrors.push(String(e?.stack ?? e)));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = m.location()?.url ?? '';
    const text = m.text();
    if (text.startsWith('Failed to load resource') && url.startsWith(UNREACHABLE)) return;
    if (text.startsWith('Failed to load resource') && allowFailedRequests.some((a) => url.startsWith(server.base + a.path) && text.includes(`status of ${a.status}`))) return;
    consoleErrors.push(`${text} @ ${url}`);
  });
  page.on('dialog', (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    void d.dismiss().catch(() => {});
  });
  if (loggedIn) await logInByApi(context, server);
  return {
    context,
    page,
    pageErrors,
    consoleErrors,
    dialogs,
    assertClean() {
      assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
      assert.deepEqual(consoleErrors, [], 'console errors in the page (other than failed image loads)');
      assert.deepEqual(dialogs, [], 'the page opened a dialog (alert/confirm/prompt)');
    },
    close: () => context.close(),
  };
}

/** Logs the context in as the dashboard user through the API (the cookie lands in the
 *  context's jar, so the pages opened in it are signed in). */
export async function logInByApi(context, server) {
  const res = await context.request.post('/api/v1/session', { data: { username: server.username, password: server.password } });
  assert.equal(res.status(), 200, `POST /api/v1/session: ${res.status()} ${await res.text()}`);
}

/** Retries `check` (which asserts) until it passes; after `timeout` ms throws its last
 *  failure, prefixed with `what`. */
export async function eventually(what, check, { timeout = 5000, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) {
        if (e instanceof Error) e.message = `${what} (still failing after ${timeout} ms): ${e.message}`;
        throw e;
      }
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The whitespace-normalised text of a locator's element. */
export async function textOf(locator) {
  return ((await locator.textContent()) ?? '').replace(/\s+/g, ' ').trim();
}
