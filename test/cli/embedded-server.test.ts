import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { strongPassword, uniqueName } from '../helpers.ts';
import { GatehouseProcess } from '../support/gatehouse-process.ts';
import { runCli } from './support.ts';

const MAIN = join(import.meta.dirname, '..', '..', 'src', 'main.ts');

/**
 * `npm start` on the embedded database and the operator's CLI at the same
 * time: the CLI works through the server's socket, so what it writes counts
 * at once, and nothing is ever written by two processes to one directory.
 */
describe('the CLI while the server runs on the embedded database', () => {
  let server: GatehouseProcess;
  let env: Record<string, string>;
  const admin = { username: uniqueName('root'), password: strongPassword() };

  before(async () => {
    server = await GatehouseProcess.start({ RATE_LIMIT_LOGIN: '1000/1m' });
    env = { DATA_DIR: server.dataDir };
  });
  after(async () => {
    await server?.destroy();
  });

  const login = (username: string, password: string) =>
    fetch(`${server.url}/api/v1/login/json`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password }),
    });
  const code = async (res: Response) => ((await res.json()) as { code?: string }).code;

  test('create-superuser takes effect at once: the new superuser logs in', async () => {
    const res = await runCli(
      [
        'create-superuser',
        '--email',
        `${admin.username}@example.com`,
        '--username',
        admin.username,
        '--password-stdin',
      ],
      env,
      `${admin.password}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await login(admin.username, admin.password)).status, 200);
  });

  test('users disable answers the next login 403 ACCOUNT_DISABLED; users enable lets it in again', async () => {
    const disabled = await runCli(['users', 'disable', admin.username], env);
    assert.equal(disabled.code, 0, disabled.stderr);
    const refused = await login(admin.username, admin.password);
    assert.equal(refused.status, 403);
    assert.equal(await code(refused), 'ACCOUNT_DISABLED');
    const enabled = await runCli(['users', 'enable', admin.username], env);
    assert.equal(enabled.code, 0, enabled.stderr);
    assert.equal((await login(admin.username, admin.password)).status, 200);
  });

  test('users unlock lifts a lockout at once', async () => {
    for (let i = 0; i < 5; i++) await login(admin.username, 'Wrong-password-123!');
    const locked = await login(admin.username, admin.password);
    assert.equal(locked.status, 423);
    assert.equal(await code(locked), 'ACCOUNT_LOCKED');
    const unlocked = await runCli(['users', 'unlock', admin.username], env);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.equal((await login(admin.username, admin.password)).status, 200);
  });

  test('gatehouse psql -c runs one statement on the server’s database and prints its rows', async () => {
    const res = await runCli(
      ['psql', '-c', `select username, is_superuser from users where username = '${admin.username}'`],
      env,
    );
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /username\s+\|\s+is_superuser/);
    assert.match(res.stdout, new RegExp(`${admin.username}\\s+\\|\\s+t`));
    assert.match(res.stdout, /\(1 row\)/);
  });

  test('without psql on PATH the built-in prompt prints the same table and reads statements from stdin', async () => {
    const bare = { ...env, PATH: '/nonexistent' };
    const once = await runCli(['psql', '-c', `select count(*) as admins from users where is_superuser`], bare);
    assert.equal(once.code, 0, once.stderr);
    assert.equal(once.stdout, ' admins \n--------\n      1\n(1 row)\n\n');
    const prompt = await runCli(['psql'], bare, `select username\nfrom users\nwhere is_superuser;\n\\q\n`);
    assert.equal(prompt.code, 0, prompt.stderr);
    assert.match(prompt.stdout, new RegExp(`^ ${admin.username}$`, 'm'));
    const bad = await runCli(['psql', '-c', 'select * from no_such_table'], bare);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /no_such_table/);
  });

  test('a second server on the same directory refuses to start and names the one running', async () => {
    const second = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? '', DATA_DIR: server.dataDir, PORT: '0', HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    second.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exitCode = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => second.kill('SIGKILL'), 60_000);
      second.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    assert.notEqual(exitCode, 0);
    assert.match(stderr, /in use by another Gatehouse process \(pid \d+\)/);
  });

  test('with the server stopped, the CLI opens the directory itself', async () => {
    assert.equal(await server.stop(), 0, server.stderr);
    const res = await runCli(['psql', '-c', 'select count(*) as users from users'], { ...env, PATH: '/nonexistent' });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /\(1 row\)/);
  });
});
