/**
 * The attack: other local users reading or rewriting Gatehouse's data. 969
 * of 1 074 files under `data/pglite` were 0666, WAL included (PGlite's NodeFS
 * chmods its files to the mode its virtual file system asks, which no umask
 * narrows), and development mail with live reset links was 0644. Now
 * everything Gatehouse writes under DATA_DIR (the embedded database, the
 * socket directory, the key ring, the development secret, mail) is 0700 for
 * directories and 0600 for files, whatever the process umask, and files an
 * earlier version left open are closed at the next start. Run with umask 000.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { buildApp } from '../../src/app.ts';
import { loadConfig } from '../../src/config.ts';
import { newUser } from '../helpers.ts';
import { GatehouseProcess } from '../support/gatehouse-process.ts';
import { waitUntil } from '../support/ports.ts';

/** Every path under `root` (itself included) whose mode gives group or others anything. */
function openToOthers(root: string): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    const stats = lstatSync(path);
    if (stats.isSymbolicLink()) return;
    if ((stats.mode & 0o077) !== 0) found.push(`${(stats.mode & 0o777).toString(8)} ${path}`);
    if (stats.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(root);
  return found;
}

function count(root: string): number {
  let n = 0;
  const walk = (path: string) => {
    n += 1;
    if (lstatSync(path).isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
  };
  walk(root);
  return n;
}

/** Embedded database, generated key ring and secret, development mail: all that goes under DATA_DIR (never the run's DATABASE_URL). */
function embeddedEnv(): Record<string, string> {
  return {
    ENVIRONMENT: 'development',
    ALGORITHM: 'EdDSA',
    LOG_LEVEL: 'silent',
    LOG_FORMAT: 'json',
    BREACH_CHECK: 'off',
    OUTBOX_POLL_MS: '50',
    // Redis writes nothing under DATA_DIR: the in-process limiter keeps the test apart from other runs.
    RATE_LIMIT_REGISTER: '1000/1h',
  };
}

describe('file modes under DATA_DIR', () => {
  let umask: number;
  before(() => {
    umask = process.umask(0);
  });
  after(() => {
    process.umask(umask);
  });

  test('with umask 000 the embedded database, keys, secret and mail are 0700/0600, and a reopened directory is tightened', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'gatehouse-modes-')), 'data');
    const open = () => buildApp(loadConfig({ ...embeddedEnv(), DATA_DIR: dataDir }), { logger: false });
    let app = await open();
    await app.ready();
    try {
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(res.statusCode, 201, res.body);
      await waitUntil(
        'the development mail file',
        () => existsSync(join(dataDir, 'mail')) && readdirSync(join(dataDir, 'mail')).length >= 2,
      );
      for (const written of ['pglite', 'pglite.run', 'jwt-keys', 'secret_key', 'mail']) {
        assert.ok(existsSync(join(dataDir, written)), `${written} is written`);
      }
      assert.ok(count(join(dataDir, 'pglite')) > 500, 'the whole database is walked');
      assert.deepEqual(openToOthers(dataDir), []);
    } finally {
      await app.close();
    }

    // As an earlier version left it: the database readable and writable by everyone.
    for (const name of ['PG_VERSION', 'postgresql.conf', 'global', 'pg_wal'])
      chmodSync(join(dataDir, 'pglite', name), 0o777);
    chmodSync(join(dataDir, 'pglite'), 0o777);
    app = await open();
    await app.ready();
    try {
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() })).statusCode, 201);
      assert.deepEqual(openToOthers(dataDir), []);
    } finally {
      await app.close();
    }
  });

  test('`node src/main.ts` started with umask 000 writes nothing others can read', async () => {
    const server = await GatehouseProcess.start(embeddedEnv());
    try {
      const res = await fetch(`${server.url}/api/v1/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(newUser()),
      });
      assert.equal(res.status, 201, await res.text());
      const mail = join(server.dataDir, 'mail');
      await waitUntil('the development mail file', () => existsSync(mail) && readdirSync(mail).length >= 2);
      assert.equal(await server.stop(), 0);
      assert.deepEqual(openToOthers(server.dataDir), []);
    } finally {
      await server.destroy();
    }
  });
});
