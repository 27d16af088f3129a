import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const dataDir = () => mkdtempSync(join(tmpdir(), 'gatehouse-startup-'));
const postgresUrl = process.env.DATABASE_URL?.startsWith('postgres') ? process.env.DATABASE_URL : undefined;

/** Runs `src/main.ts` until its ready line; answers everything it wrote by then and its URL. */
async function startUntilReady(env: Record<string, string>): Promise<{ out: string; url: string; stop(): void }> {
  const child = spawn(process.execPath, ['src/main.ts'], {
    env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir(), PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line: ${out}`)), 90_000);
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const ready = /Gatehouse ready at [^ ]+ \(listening on (http:\/\/127\.0\.0\.1:\d+);/.exec(out);
        if (ready) {
          clearTimeout(timer);
          resolve(ready[1] as string);
        }
      });
      child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
    return { out, url, stop: () => child.kill('SIGKILL') };
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
}

test("document 000's production snippet starts: mail to the log with a loud SMTP_URL warning", async () => {
  const server = await startUntilReady({
    ENVIRONMENT: 'production',
    DEBUG: 'False',
    SECRET_KEY: 'hT0b4cY0WcTqg6m0e0h1bA6mJ1c6t4bY3Jb9o6x0Q2c=',
    DATABASE_PASSWORD: 'db-password-never-logged',
    REDIS_PASSWORD: 'redis-password-never-logged',
    PUBLIC_URL: 'https://auth.example.com',
    ...(postgresUrl ? { DATABASE_URL: postgresUrl } : { DATABASE_URL: 'memory://' }),
  });
  try {
    const lines = server.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    const smtp = lines.find((l) => l.msg.includes('SMTP_URL is not set'));
    assert.ok(smtp, server.out);
    assert.equal(smtp.level, 40);
    assert.match(smtp.msg, /NO MAIL IS SENT/);
    // No REDIS_URL: REDIS_PASSWORD has nowhere to go, and start-up says so.
    assert.ok(
      lines.some((l) => l.level === 40 && l.msg.startsWith('REDIS_PASSWORD is ignored')),
      server.out,
    );
    const ready = lines.find((l) => l.msg.startsWith('Gatehouse ready'));
    assert.equal(ready?.level, 30);
    assert.doesNotMatch(server.out, /password-never-logged/);
    const health = await fetch(`${server.url}/healthz`);
    assert.equal(health.status, 200);
  } finally {
    server.stop();
  }
});

for (const [name, env] of [
  ['a password in DATABASE_URL', { DATABASE_URL: 'postgres://gatehouse:hunter2-secret@127.0.0.1:1/depin' }],
  [
    'DATABASE_PASSWORD',
    { DATABASE_URL: 'postgres://gatehouse@127.0.0.1:1/depin', DATABASE_PASSWORD: 'hunter2-secret' },
  ],
] as const) {
  test(`an unreachable database stops start-up naming DATABASE_URL and host:port, not ${name}`, () => {
    const r = spawnSync(process.execPath, ['src/main.ts'], {
      env: { PATH: process.env.PATH ?? '', DATA_DIR: dataDir(), PORT: '0', HOST: '127.0.0.1', ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 1, r.stderr);
    assert.match(
      r.stderr,
      /gatehouse: failed to start: DATABASE_URL: cannot connect to PostgreSQL at 127\.0\.0\.1:1 \(database depin\): .*ECONNREFUSED/,
    );
    assert.doesNotMatch(r.stdout + r.stderr, /hunter2/);
  });
}
