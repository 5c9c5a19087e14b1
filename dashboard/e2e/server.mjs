// A real `botwatch serve` for the end-to-end tests: a fresh data folder, a free port,
// a random admin token, one dashboard user (viewer) made with `botwatch users add`,
// and ingestion over HTTP exactly as a bot does it.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_BIN = resolve(here, '../../target/debug/botwatch');

/** The binary under test: BOTWATCH_BIN, else the debug build of this checkout. */
export function botwatchBin() {
  const bin = process.env.BOTWATCH_BIN || DEFAULT_BIN;
  if (!existsSync(bin)) {
    throw new Error(
      `botwatch binary not found at ${bin}. Build it with \`cd ${resolve(here, '../..')} && cargo build --bin botwatch\`, ` +
        'or point BOTWATCH_BIN at one.',
    );
  }
  return bin;
}

/** A port nobody listens on right now (listen on 0, read it, close). */
export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/** The environment of a botwatch process: ours, without any BOTWATCH_* of the caller's
 *  (a stray BOTWATCH_REDIS_URL or BOTWATCH_DATA must not point the test elsewhere). */
function cleanEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BOTWATCH_')) env[k] = v;
  return { ...env, RUST_BACKTRACE: '0', ...extra };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `botwatch serve` (or `command`: `demo`, with its traffic, FAQ bot and web
 * chat) and waits for /healthz. `env`: more variables for the server process (e.g.
 * BOTWATCH_GA_ENDPOINT; they win over the test's own). Returns what the tests need:
 * `base` (http://127.0.0.1:PORT), `username`, `password`, `ingest(events)`, `stop()`.
 */
export async function startServer({ username = 'e2e', role = 'viewer', command = 'serve', env = {} } = {}) {
  const bin = botwatchBin();
  const data = mkdtempSync(join(tmpdir(), 'botwatch-e2e-'));
  const token = randomBytes(24).toString('hex');
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;

  /** Adds a dashboard user with `botwatch users add` (also beside the running server);
   *  returns their password. */
  const addUser = (name, userRole) => {
    const secret = randomBytes(12).toString('base64url');
    const r = spawnSync(bin, ['users', 'add', name, '--role', userRole, '--data', data], {
      env: cleanEnv({ BOTWATCH_PASSWORD: secret, BOTWATCH_LOG: 'warn' }),
      encoding: 'utf8',
      timeout: 30_000,
    });
    if (r.status !== 0) throw new Error(`botwatch users add ${name} failed (status ${r.status}, ${r.error ?? ''}):\n${r.stdout}\n${r.stderr}`);
    return secret;
  };
  let password;
  try {
    password = addUser(username, role);
  } catch (e) {
    rmSync(data, { recursive: true, force: true });
    throw e;
  }

  let stderr = '';
  let stdout = '';
  const keep = (s, b) => (s + b).slice(-20_000);
  let child;
  let exited;
  let exit;
  /** Starts the process (again, for a restart: same data, same port). */
  const launch = () => {
    child = spawn(bin, [command, '--data', data, '--listen', `127.0.0.1:${port}`], {
      env: cleanEnv({ BOTWATCH_ADMIN_TOKEN: token, BOTWATCH_LOG: 'warn', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stderr.on('data', (b) => (stderr = keep(stderr, b)));
    child.stdout.on('data', (b) => (stdout = keep(stdout, b)));
    exited = null;
    const mine = child;
    exit = new Promise((ok) =>
      mine.once('exit', (code, signal) => {
        exited = { code, signal };
        ok(exited);
      }),
    );
  };
  launch();

  /** Waits for the process to end, at most `ms` (the timer is cleared either way, so
   *  it does not keep the test process alive). */
  const exitWithin = (ms) => {
    let timer;
    return Promise.race([exit, new Promise((ok) => (timer = setTimeout(() => ok(null), ms)))]).finally(() => clearTimeout(timer));
  };

  const server = {
    addUser,
    base,
    token,
    username,
    password,
    data,
    output: () => `--- stderr ---\n${stderr}\n--- stdout ---\n${stdout}`,
    /** POSTs one event or an array as a bot does; returns { status, body }. */
    async ingest(events) {
      const res = await fetch(`${base}/api/v1/events`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(events),
      });
      const text = await res.text();
      let body = text;
      try {
        body = JSON.parse(text);
      } catch {}
      return { status: res.status, body };
    },
    /** GET on the API with the admin token (to cross-check what the pages show). */
    async api(path) {
      const res = await fetch(base + path, { headers: { Authorization: `Bearer ${token}` } });
      if (!res.ok) throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
      return res.json();
    },
    /** Ends the process (SIGTERM, then SIGKILL), keeping its data. */
    async halt() {
      if (!exited) {
        child.kill('SIGTERM');
        if (!(await exitWithin(5000))) {
          child.kill('SIGKILL');
          await exitWithin(5000);
        }
      }
    },
    /** A new process on the same data and port, healthy. */
    async start() {
      launch();
      await healthy();
    },
    async stop() {
      await server.halt();
      rmSync(data, { recursive: true, force: true });
    },
  };

  const healthy = async () => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited) {
        await server.stop();
        throw new Error(`botwatch serve exited before it was healthy (${JSON.stringify(exited)}):\n${server.output()}`);
      }
      try {
        const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200) return;
      } catch {}
      if (Date.now() > deadline) {
        const out = server.output();
        await server.stop();
        throw new Error(`botwatch serve did not answer 200 on ${base}/healthz within 30 s:\n${out}`);
      }
      await sleep(100);
    }
  };
  await healthy();
  return server;
}
