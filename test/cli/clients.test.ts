import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type Db, openDatabase } from '../../src/db/index.ts';
import { uniqueName } from '../helpers.ts';
import { type IsolatedDatabase, isolatedDatabase, runCli } from './support.ts';

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

describe('gatehouse clients', () => {
  let iso: IsolatedDatabase;
  let env: Record<string, string | undefined>;

  before(async () => {
    iso = await isolatedDatabase();
    env = {
      ENVIRONMENT: 'test',
      SECRET_KEY: randomBytes(32).toString('base64url'),
      DATABASE_URL: iso.url,
      DATA_DIR: iso.dataDir,
      REDIS_URL: process.env.REDIS_URL,
      REDIS_KEY_PREFIX: `t:${uniqueName('cli-clients')}:`,
      LOG_LEVEL: 'warn',
    };
  });
  after(() => iso.cleanup());

  /** Opens the CLI's database between runs (an embedded PGlite directory takes one process at a time). */
  async function inDatabase<T>(work: (db: Db) => Promise<T>): Promise<T> {
    const database = await openDatabase(iso.url, iso.dataDir);
    try {
      return await work(database.db);
    } finally {
      await database.close();
    }
  }

  const clientRow = (clientId: string) =>
    inDatabase((db) => db.selectFrom('oauth_clients').selectAll().where('client_id', '=', clientId).executeTakeFirst());

  const audited = (action: string) =>
    inDatabase((db) =>
      db.selectFrom('audit_logs').select(['user_id', 'user_agent', 'details']).where('action', '=', action).execute(),
    );

  let confidential: { clientId: string; secret: string };

  test('create registers a confidential client and prints its secret once, stored only as SHA-256', async () => {
    const res = await runCli(
      [
        'clients',
        'create',
        '--name',
        'Billing',
        '--redirect-uri',
        'https://billing.example.com/callback',
        '--redirect-uri',
        'http://localhost:3000/callback',
        '--post-logout-redirect-uri',
        'https://billing.example.com/',
        '--first-party',
      ],
      env,
    );
    assert.equal(res.code, 0, res.stderr);
    const clientId = /^client_id:\s+(\S+)$/m.exec(res.stdout)?.[1];
    const secret = /^client_secret:\s+(\S+)$/m.exec(res.stdout)?.[1];
    assert.ok(clientId && secret, res.stdout);
    assert.match(res.stdout, /shown only once/);
    confidential = { clientId, secret };

    const row = await clientRow(clientId);
    assert.ok(row);
    assert.equal(row.client_secret_hash, sha256(secret));
    assert.equal(row.client_name, 'Billing');
    assert.equal(row.token_endpoint_auth_method, 'client_secret_basic');
    assert.equal(row.first_party, true);
    assert.deepEqual(row.redirect_uris, ['https://billing.example.com/callback', 'http://localhost:3000/callback']);
    assert.deepEqual(row.post_logout_redirect_uris, ['https://billing.example.com/']);

    const audits = await audited('oauth_client_created');
    assert.equal(audits.length, 1);
    assert.equal(audits[0]!.user_id, null);
    assert.equal(audits[0]!.user_agent, 'gatehouse-cli');
    assert.equal((audits[0]!.details as Record<string, unknown>).client_id, clientId);
    assert.ok(!JSON.stringify(audits).includes(secret));
  });

  test('create --public --json prints the registration response without a secret', async () => {
    const res = await runCli(
      [
        'clients',
        'create',
        '--public',
        '--json',
        '--name',
        'Mobile',
        '--redirect-uri',
        'com.example.mobile:/callback',
        '--scope',
        'openid email',
      ],
      env,
    );
    assert.equal(res.code, 0, res.stderr);
    const body = JSON.parse(res.stdout) as Record<string, unknown>;
    assert.equal(body.client_name, 'Mobile');
    assert.equal(body.token_endpoint_auth_method, 'none');
    assert.equal(body.scope, 'openid email');
    assert.deepEqual(body.response_types, ['code']);
    assert.equal(body.client_secret, undefined);
    assert.equal((await clientRow(String(body.client_id)))?.client_secret_hash, null);
  });

  test('--public with --confidential, or a missing --name or --redirect-uri, is a usage error (exit 2)', async () => {
    const uri = ['--redirect-uri', 'https://a.example/cb'];
    for (const args of [['--name', 'Both', '--public', '--confidential', ...uri], ['--name', 'No redirect'], uri]) {
      const res = await runCli(['clients', 'create', ...args], env);
      assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
      assert.match(res.stderr, /Usage: gatehouse clients create/);
    }
    assert.match(
      (await runCli(['clients', 'create', '--name', 'Both', '--public', '--confidential', ...uri], env)).stderr,
      /--public and --confidential/,
    );
  });

  test('bad metadata exits 1 naming the field, and registers nothing', async () => {
    const res = await runCli(['clients', 'create', '--name', 'Bad', '--redirect-uri', 'javascript:alert(1)'], env);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /redirect_uris\.0: The javascript: scheme is not allowed/);
    const scope = await runCli(
      ['clients', 'create', '--name', 'Bad', '--redirect-uri', 'https://a.example/cb', '--scope', 'openid admin'],
      env,
    );
    assert.equal(scope.code, 1);
    assert.match(scope.stderr, /scope: Unknown scope: admin/);
    const rows = await inDatabase((db) =>
      db.selectFrom('oauth_clients').select('id').where('client_name', '=', 'Bad').execute(),
    );
    assert.equal(rows.length, 0);
  });

  test('list shows every client, newest first, never a secret', async () => {
    const res = await runCli(['clients', 'list'], env);
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trim().split('\n');
    assert.equal(lines.length, 2, res.stdout);
    assert.match(lines[0]!, /public\s+Mobile\s+com\.example\.mobile:\/callback/);
    assert.match(lines[1]!, new RegExp(`^${confidential.clientId}\\s+confidential first-party\\s+Billing`));
    assert.ok(!res.stdout.includes(confidential.secret));

    const asJson = await runCli(['clients', 'list', '--json'], env);
    assert.equal(asJson.code, 0, asJson.stderr);
    const clients = JSON.parse(asJson.stdout) as Record<string, unknown>[];
    assert.deepEqual(
      clients.map((c) => c.client_name),
      ['Mobile', 'Billing'],
    );
    assert.ok(!asJson.stdout.includes(confidential.secret));
    assert.ok(!asJson.stdout.includes(sha256(confidential.secret)));
  });

  test('rotate-secret prints a new secret once; only its hash is stored', async () => {
    const res = await runCli(['clients', 'rotate-secret', confidential.clientId], env);
    assert.equal(res.code, 0, res.stderr);
    const secret = /^client_secret:\s+(\S+)$/m.exec(res.stdout)?.[1];
    assert.ok(secret && secret !== confidential.secret, res.stdout);
    assert.match(res.stdout, /shown only once/);
    assert.equal((await clientRow(confidential.clientId))?.client_secret_hash, sha256(secret));
    assert.equal((await audited('oauth_client_secret_rotated')).length, 1);

    const unknown = await runCli(['clients', 'rotate-secret', 'no-such-client'], env);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /No such client/);
    assert.equal((await runCli(['clients', 'rotate-secret'], env)).code, 2);
  });

  test('delete removes the client; a second delete exits 1', async () => {
    const res = await runCli(['clients', 'delete', confidential.clientId], env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`Deleted client ${confidential.clientId}`));
    assert.equal(await clientRow(confidential.clientId), undefined);
    assert.equal((await audited('oauth_client_deleted')).length, 1);

    const again = await runCli(['clients', 'delete', confidential.clientId], env);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /No such client/);
  });
});
