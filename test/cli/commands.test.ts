import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importPKCS8 } from 'jose';
import { sql } from 'kysely';
import { type Db, openDatabase } from '../../src/db/index.ts';
import { strongPassword, uniqueName } from '../helpers.ts';
import { type IsolatedDatabase, isolatedDatabase, runCli, runNode } from './support.ts';

const COMMANDS = [
  'migrate',
  'create-superuser',
  'users unlock',
  'users disable',
  'users enable',
  'users mfa-reset',
  'clients create',
  'clients list',
  'clients delete',
  'clients rotate-secret',
  'audit verify',
  'cleanup',
  'breach import',
  'keys generate',
  'keys rotate',
];

describe('gatehouse CLI', () => {
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
      REDIS_KEY_PREFIX: `t:${uniqueName('cli')}:`,
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

  describe('the npm bin (npx gatehouse)', () => {
    const repo = join(import.meta.dirname, '..', '..');

    // From an installed tarball it runs the compiled JavaScript: test/package/install.test.ts.
    test('bin/gatehouse.mjs runs the CLI from the sources', async () => {
      const res = await runNode([join(repo, 'bin', 'gatehouse.mjs'), '--version'], env);
      assert.equal(res.code, 0, res.stderr);
      const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };
      assert.equal(res.stdout, `${pkg.version}\n`);
    });
  });

  describe('help and usage errors', () => {
    test('--help lists every command and exits 0', async () => {
      const res = await runCli(['--help'], env);
      assert.equal(res.code, 0, res.stderr);
      for (const name of COMMANDS) assert.match(res.stdout, new RegExp(`^  ${name} `, 'm'), name);
    });

    test('every command answers --help with its usage, touching nothing', async () => {
      for (const name of COMMANDS) {
        const res = await runCli([...name.split(' '), '--help'], {
          ...env,
          DATABASE_URL: 'postgres://nowhere.invalid/x',
        });
        assert.equal(res.code, 0, `${name}: ${res.stderr}`);
        assert.match(res.stdout, new RegExp(`^Usage: gatehouse ${name}`), name);
      }
    });

    test('no command, an unknown command, a missing subcommand and an unknown option exit 2 with a message', async () => {
      const none = await runCli([], env);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /Usage: gatehouse <command>/);
      const unknown = await runCli(['frobnicate'], env);
      assert.equal(unknown.code, 2);
      assert.match(unknown.stderr, /unknown command "frobnicate"/);
      const group = await runCli(['users'], env);
      assert.equal(group.code, 2);
      assert.match(group.stderr, /a subcommand is required[\s\S]*users unlock/);
      const option = await runCli(['migrate', '--force'], env);
      assert.equal(option.code, 2);
      assert.match(option.stderr, /Unknown option '--force'/);
    });

    test('a bad configuration value exits 78 naming the variable', async () => {
      const res = await runCli(['migrate'], { ...env, LOCKOUT_THRESHOLD: 'many' });
      assert.equal(res.code, 78);
      assert.match(res.stderr, /LOCKOUT_THRESHOLD/);
    });

    test('an unreachable database exits 1 with a clear message', async () => {
      const res = await runCli(['migrate'], { ...env, DATABASE_URL: 'postgres://gatehouse@127.0.0.1:1/none' });
      assert.equal(res.code, 1);
      assert.match(res.stderr, /cannot open the database \(DATABASE_URL\)/);
    });
  });

  describe('migrate', () => {
    test('applies the migrations once, then reports the database up to date', async () => {
      const first = await runCli(['migrate'], env);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /Applied \d+ migration\(s\): 0001_initial/);
      const second = await runCli(['migrate'], env);
      assert.equal(second.code, 0, second.stderr);
      assert.equal(second.stdout, 'The database is up to date.\n');
      const tables = await inDatabase((db) => db.introspection.getTables());
      assert.ok(tables.some((t) => t.name === 'audit_chain'));
    });
  });

  describe('create-superuser', () => {
    const admin = { username: uniqueName('root'), password: strongPassword() };

    test('creates an active, verified superuser from flags and --password-stdin', async () => {
      const res = await runCli(
        [
          'create-superuser',
          '--email',
          `${admin.username}@Example.COM`,
          '--username',
          admin.username,
          '--password-stdin',
        ],
        env,
        `${admin.password}\n`,
      );
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, new RegExp(`Superuser ${admin.username} <${admin.username}@example.com> created`));
      const row = await inDatabase((db) =>
        db.selectFrom('users').selectAll().where('username', '=', admin.username).executeTakeFirstOrThrow(),
      );
      assert.equal(row.is_superuser, true);
      assert.equal(row.is_active, true);
      assert.notEqual(row.email_verified_at, null);
      assert.match(row.password_hash, /^\$argon2id\$/);
      assert.ok(!row.password_hash.includes(admin.password));
      const audit = await inDatabase((db) =>
        db.selectFrom('audit_logs').selectAll().where('user_id', '=', row.id).execute(),
      );
      assert.deepEqual(
        audit.map((a) => a.action),
        ['superuser_created'],
      );
      assert.equal(audit[0]?.user_agent, 'gatehouse-cli');
    });

    test('the password policy applies: every failing rule is listed, exit 1, nothing created', async () => {
      const username = uniqueName('weak');
      const res = await runCli(
        ['create-superuser', '--email', `${username}@example.com`, '--username', username, '--password-stdin'],
        env,
        'password\n',
      );
      assert.equal(res.code, 1);
      assert.match(res.stderr, /Password does not meet security requirements/);
      assert.match(res.stderr, /at least 12 characters/);
      assert.match(res.stderr, /uppercase/);
      const count = await inDatabase((db) =>
        db.selectFrom('users').select('id').where('username', '=', username).execute(),
      );
      assert.equal(count.length, 0);
    });

    test('a breached password is refused with the recommendation', async () => {
      const username = uniqueName('breached');
      const res = await runCli(
        [
          'create-superuser',
          '--email',
          `${username}@example.com`,
          '--username',
          username,
          '--password',
          'S0nyer1c$$0n',
        ],
        env,
      );
      assert.equal(res.code, 1);
      assert.match(res.stderr, /appeared in a data breach/);
      assert.match(res.stderr, /Please choose a different password that has not been compromised/);
      assert.match(res.stderr, /--password is visible in the process list/);
    });

    test('a taken email, an invalid email and missing flags off a terminal are refused', async () => {
      const taken = await runCli(
        [
          'create-superuser',
          '--email',
          `${admin.username}@example.com`,
          '--username',
          uniqueName(),
          '--password-stdin',
        ],
        env,
        `${strongPassword()}\n`,
      );
      assert.equal(taken.code, 1);
      assert.match(taken.stderr, /Email address is already registered/);
      const invalid = await runCli(
        ['create-superuser', '--email', 'not-an-email', '--username', uniqueName(), '--password-stdin'],
        env,
        `${strongPassword()}\n`,
      );
      assert.equal(invalid.code, 1);
      assert.match(invalid.stderr, /email: /);
      const missing = await runCli(['create-superuser', '--username', uniqueName()], env);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /--email is required when not run on a terminal/);
    });
  });

  describe('users unlock | disable | enable', () => {
    const username = uniqueName('member');
    const email = `${username}@example.com`;

    before(async () => {
      const res = await runCli(
        ['create-superuser', '--email', email, '--username', username, '--password-stdin'],
        env,
        `${strongPassword()}\n`,
      );
      assert.equal(res.code, 0, res.stderr);
    });

    test('disable sets is_active false and revokes every session; enable restores it', async () => {
      await inDatabase(async (db) => {
        const user = await db
          .selectFrom('users')
          .select('id')
          .where('username', '=', username)
          .executeTakeFirstOrThrow();
        await db
          .insertInto('sessions')
          .values({
            user_id: user.id,
            refresh_token_hash: randomBytes(16).toString('hex'),
            expires_at: new Date(Date.now() + 86_400_000),
          })
          .execute();
      });
      const disabled = await runCli(['users', 'disable', email.toUpperCase()], env);
      assert.equal(disabled.code, 0, disabled.stderr);
      assert.match(disabled.stdout, new RegExp(`Disabled: ${username}`));
      await inDatabase(async (db) => {
        const user = await db
          .selectFrom('users')
          .selectAll()
          .where('username', '=', username)
          .executeTakeFirstOrThrow();
        assert.equal(user.is_active, false);
        const live = await db
          .selectFrom('sessions')
          .select('id')
          .where('user_id', '=', user.id)
          .where('revoked_at', 'is', null)
          .execute();
        assert.equal(live.length, 0);
        const audit = await db
          .selectFrom('audit_logs')
          .selectAll()
          .where('user_id', '=', user.id)
          .where('action', '=', 'admin_user_updated')
          .executeTakeFirstOrThrow();
        assert.equal((audit.details as { via: string }).via, 'cli');
        assert.deepEqual((audit.details as { applied: unknown }).applied, { is_active: false, sessions_revoked: 1 });
      });
      const enabled = await runCli(['users', 'enable', username], env);
      assert.equal(enabled.code, 0, enabled.stderr);
      const user = await inDatabase((db) =>
        db.selectFrom('users').select('is_active').where('username', '=', username).executeTakeFirstOrThrow(),
      );
      assert.equal(user.is_active, true);
    });

    test('mfa-reset turns the second factor off, audited (via cli) and mailed', async () => {
      await inDatabase(async (db) => {
        const { id } = await db
          .selectFrom('users')
          .select('id')
          .where('username', '=', username)
          .executeTakeFirstOrThrow();
        await db
          .insertInto('mfa_totp')
          .values({ user_id: id, secret_ciphertext: 'x.y.z', key_id: 'k', confirmed_at: new Date() })
          .execute();
        await db.insertInto('mfa_backup_codes').values({ user_id: id, key_id: 'k', code_hash: 'h' }).execute();
      });
      const res = await runCli(['users', 'mfa-reset', username], env);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, new RegExp(`Second factor turned off: ${username}`));
      await inDatabase(async (db) => {
        const { id } = await db
          .selectFrom('users')
          .select('id')
          .where('username', '=', username)
          .executeTakeFirstOrThrow();
        assert.equal((await db.selectFrom('mfa_totp').select('user_id').where('user_id', '=', id).execute()).length, 0);
        assert.equal(
          (await db.selectFrom('mfa_backup_codes').select('id').where('user_id', '=', id).execute()).length,
          0,
        );
        const audit = await db
          .selectFrom('audit_logs')
          .selectAll()
          .where('user_id', '=', id)
          .where('action', '=', 'mfa_reset_by_admin')
          .executeTakeFirstOrThrow();
        assert.equal((audit.details as { via: string }).via, 'cli');
        const mail = await db
          .selectFrom('email_outbox')
          .select('template')
          .where('to_address', '=', email)
          .where('template', '=', 'mfa_disabled')
          .execute();
        assert.equal(mail.length, 1);
      });
      const again = await runCli(['users', 'mfa-reset', username], env);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /No second factor was on/);
      const unknown = await runCli(['users', 'mfa-reset', 'nobody-at-all'], env);
      assert.equal(unknown.code, 1, unknown.stderr);
    });

    test('unlock clears the lockout of the account, from every source', async () => {
      let subject = '';
      await inDatabase(async (db) => {
        const { id } = await db
          .selectFrom('users')
          .select('id')
          .where('username', '=', username)
          .executeTakeFirstOrThrow();
        subject = `user:${id}`;
        const lockedUntil = new Date(Date.now() + 15 * 60_000);
        for (const source of ['untrusted', 'device:abc']) {
          await db
            .insertInto('lockouts')
            .values({ identifier: subject, source, failures: 0, lock_count: 1, locked_until: lockedUntil })
            .execute();
        }
      });
      const res = await runCli(['users', 'unlock', username], env);
      assert.equal(res.code, 0, res.stderr);
      await inDatabase(async (db) => {
        const left = await db
          .selectFrom('lockouts')
          .select('identifier')
          .where('identifier', '=', subject)
          .where('locked_until', '>', new Date())
          .execute();
        assert.deepEqual(left, []);
        const unlocked = await db
          .selectFrom('audit_logs')
          .innerJoin('users', 'users.id', 'audit_logs.user_id')
          .select('audit_logs.details')
          .where('audit_logs.action', '=', 'account_unlocked')
          .where('users.username', '=', username)
          .executeTakeFirstOrThrow();
        assert.deepEqual(unlocked.details, { by_user_id: null, via: 'cli' });
      });
    });

    test('an unknown user exits 1; no argument or two arguments exit 2', async () => {
      const unknown = await runCli(['users', 'disable', 'nobody-at-all'], env);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /no user with email or username "nobody-at-all"/);
      const none = await runCli(['users', 'unlock'], env);
      assert.equal(none.code, 2);
      const two = await runCli(['users', 'enable', 'a', 'b'], env);
      assert.equal(two.code, 2);
      assert.match(two.stderr, /expected exactly one email or username, got 2/);
    });
  });

  describe('cleanup', () => {
    test('deletes an expired session and keeps a live one; --json reports the counts per table', async () => {
      assert.equal((await runCli(['migrate'], env)).code, 0);
      const name = uniqueName('cleanup');
      const [expired, live] = await inDatabase(async (db) => {
        const user = await db
          .insertInto('users')
          .values({ email: `${name}@example.com`, username: name, password_hash: '$argon2id$v=19$m=19456,t=2,p=1$x$y' })
          .returning('id')
          .executeTakeFirstOrThrow();
        const session = async (expiresAt: Date) =>
          (
            await db
              .insertInto('sessions')
              .values({ uuid: randomUUID(), user_id: user.id, refresh_token_hash: randomUUID(), expires_at: expiresAt })
              .returning('id')
              .executeTakeFirstOrThrow()
          ).id;
        return [await session(new Date(Date.now() - 3 * 86_400_000)), await session(new Date(Date.now() + 86_400_000))];
      });

      const res = await runCli(['cleanup', '--json'], env);
      assert.equal(res.code, 0, res.stderr);
      const purged = JSON.parse(res.stdout) as Record<string, number>;
      assert.deepEqual(Object.keys(purged).sort(), [
        'email_changes',
        'email_outbox',
        'email_sign_ins',
        'lockouts',
        'login_attempts',
        'mfa_challenges',
        'oidc_payloads',
        'one_time_tokens',
        'registration_attempts',
        'sessions',
        'webauthn_challenges',
        'webhook_deliveries',
      ]);
      assert.ok((purged.sessions ?? 0) >= 1);
      const left = await inDatabase((db) =>
        db.selectFrom('sessions').select('id').where('id', 'in', [expired, live]).execute(),
      );
      assert.deepEqual(
        left.map((r) => r.id),
        [live],
      );

      const text = await runCli(['cleanup'], env);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /^Deleted:\n {2}sessions: 0\n/);
    });
  });

  describe('audit verify', () => {
    test('exits 0 on an intact chain, and 1 naming the row once a row is edited with SQL', async () => {
      const ok = await runCli(['audit', 'verify'], env);
      assert.equal(ok.code, 0, ok.stdout + ok.stderr);
      assert.match(ok.stdout, /Audit log intact: [1-9]\d* sealed row\(s\) verified, 0 not sealed yet/);

      const target = await inDatabase(async (db) => {
        const row = await db.selectFrom('audit_logs').select('id').where('seal_seq', '=', 2).executeTakeFirstOrThrow();
        await sql`update audit_logs set ip_address = '192.0.2.66' where id = ${row.id}`.execute(db);
        return row.id;
      });
      const bad = await runCli(['audit', 'verify'], env);
      assert.equal(bad.code, 1);
      assert.match(bad.stdout, new RegExp(`TAMPERED \\(altered\\): row id ${target} \\(seal 2\\) was altered`));
      const json = await runCli(['audit', 'verify', '--json'], env);
      assert.equal(json.code, 1);
      const result = JSON.parse(json.stdout) as { ok: boolean; problem: { kind: string; id: number } };
      assert.equal(result.ok, false);
      assert.deepEqual([result.problem.kind, result.problem.id], ['altered', target]);

      await inDatabase((db) => sql`delete from audit_logs where id = ${target}`.execute(db));
      const deleted = await runCli(['audit', 'verify'], env);
      assert.equal(deleted.code, 1);
      assert.match(deleted.stdout, /TAMPERED \(deleted\)/);
    });
  });

  describe('keys', () => {
    test('keys generate prints a usable EdDSA PEM key and its kid; HS256 gives a 256-bit secret', async () => {
      const ed = await runCli(['keys', 'generate', '--algorithm', 'EdDSA'], env);
      assert.equal(ed.code, 0, ed.stderr);
      await importPKCS8(ed.stdout, 'EdDSA');
      assert.match(ed.stderr, /kid [A-Za-z0-9_-]{43}/);
      const hs = await runCli(['keys', 'generate', '--algorithm', 'hs256'], env);
      assert.equal(hs.code, 0, hs.stderr);
      assert.equal(Buffer.from(hs.stdout.trim(), 'base64url').length, 32);
      const bad = await runCli(['keys', 'generate', '--algorithm', 'none'], env);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--algorithm must be one of HS256, EdDSA, ES256, RS256, got "none"/);
    });

    test('keys generate --out writes mode 0600 and never overwrites', async () => {
      const out = join(iso.dataDir, 'jwt.pem');
      const first = await runCli(['keys', 'generate', '--algorithm', 'ES256', '--out', out], env);
      assert.equal(first.code, 0, first.stderr);
      assert.equal(first.stdout, '');
      assert.equal(statSync(out).mode & 0o777, 0o600);
      await importPKCS8(readFileSync(out, 'utf8'), 'ES256');
      const again = await runCli(['keys', 'generate', '--algorithm', 'ES256', '--out', out], env);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /cannot write .*jwt\.pem/);
    });

    test('keys rotate adds a signing key to the ring and retires the previous one', async () => {
      const dir = join(iso.dataDir, 'ring');
      const ringEnv = { ...env, ALGORITHM: 'EdDSA', JWT_KEYS_DIR: dir };
      const first = await runCli(['keys', 'rotate'], ringEnv);
      assert.equal(first.code, 0, first.stderr);
      const kid1 = /signing key (\S+) in/.exec(first.stdout)?.[1];
      assert.ok(kid1 && existsSync(join(dir, `${kid1}.json`)));
      const second = await runCli(['keys', 'rotate'], ringEnv);
      assert.equal(second.code, 0, second.stderr);
      assert.match(second.stdout, new RegExp(`Retired: ${kid1}`));
      const stored = readdirSync(dir).map(
        (f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as { kid: string; retired_at: string | null },
      );
      assert.equal(stored.length, 2);
      assert.equal(stored.filter((k) => k.retired_at === null).length, 1);
      assert.notEqual(stored.find((k) => k.kid === kid1)?.retired_at, null);
    });

    test('keys rotate refuses HS256, whose key is SECRET_KEY', async () => {
      const res = await runCli(['keys', 'rotate'], { ...env, ALGORITHM: 'HS256' });
      assert.equal(res.code, 1);
      assert.match(res.stderr, /change SECRET_KEY/);
    });
  });
});
