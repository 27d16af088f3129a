import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { type Db, openDatabase } from '../../src/db/index.ts';
import { strongPassword, uniqueName } from '../helpers.ts';
import { type IsolatedDatabase, isolatedDatabase, runCli } from './support.ts';

const COMMANDS = [
  'users create',
  'users delete',
  'users reset-password',
  'users superuser',
  'users sessions',
  'users revoke-sessions',
  'users search',
  'users export',
];

type Body = Record<string, unknown>;

describe('gatehouse users: administration at the CLI', () => {
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
      REDIS_KEY_PREFIX: `t:${uniqueName('cliadm')}:`,
      LOG_LEVEL: 'warn',
      REQUIRE_EMAIL_VERIFICATION: 'true',
    };
  });
  after(() => iso.cleanup());

  async function inDatabase<T>(work: (db: Db) => Promise<T>): Promise<T> {
    const database = await openDatabase(iso.url, iso.dataDir);
    try {
      return await work(database.db);
    } finally {
      await database.close();
    }
  }

  const userRow = (username: string) =>
    inDatabase((db) => db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst());

  /** The CLI's audit rows about a user: no actor (user_id null), via cli, no client address. */
  async function cliAudit(action: string, uuid: string) {
    const rows = await inDatabase((db) =>
      db.selectFrom('audit_logs').selectAll().where('action', '=', action).orderBy('id').execute(),
    );
    const mine = rows.filter((r) => (r.details as Body).target_user_uuid === uuid);
    assert.ok(mine.length > 0, `${action} audited`);
    for (const row of mine) {
      assert.equal(row.user_id, null);
      assert.equal(row.ip_address, null);
      assert.equal(row.user_agent, 'gatehouse-cli');
      assert.equal((row.details as Body).via, 'cli');
    }
    return mine;
  }

  async function create(verified = true) {
    const username = uniqueName('cu');
    const email = `${username}@example.com`;
    const password = strongPassword();
    const res = await runCli(
      ['users', 'create', email, username, '--password-stdin', ...(verified ? ['--verified'] : [])],
      env,
      `${password}\n`,
    );
    assert.equal(res.code, 0, res.stderr);
    const row = await userRow(username);
    assert.ok(row);
    return { username, email, password, id: row.id, uuid: row.uuid };
  }

  async function addSession(userId: number): Promise<string> {
    return inDatabase(async (db) => {
      const row = await db
        .insertInto('sessions')
        .values({
          user_id: userId,
          refresh_token_hash: randomBytes(16).toString('hex'),
          expires_at: new Date(Date.now() + 86_400_000),
          user_agent: 'test-agent',
        })
        .returning('uuid')
        .executeTakeFirstOrThrow();
      return row.uuid;
    });
  }

  test('--help lists every new command, and each answers --help with its usage', async () => {
    const res = await runCli(['--help'], env);
    assert.equal(res.code, 0, res.stderr);
    for (const name of COMMANDS) assert.match(res.stdout, new RegExp(`^  ${name} `, 'm'), name);
    for (const name of COMMANDS) {
      const help = await runCli([...name.split(' '), '--help'], {
        ...env,
        DATABASE_URL: 'postgres://nowhere.invalid/x',
      });
      assert.equal(help.code, 0, `${name}: ${help.stderr}`);
      assert.match(help.stdout, new RegExp(`^Usage: gatehouse ${name}`), name);
    }
  });

  describe('users create', () => {
    test('with --password-stdin --verified: a verified user with that password; no mail; audited', async () => {
      const user = await create(true);
      const row = await userRow(user.username);
      assert.notEqual(row?.email_verified_at, null);
      assert.equal(row?.has_password, true);
      assert.equal(row?.is_superuser, false);
      assert.match(row?.password_hash ?? '', /^\$argon2id\$/);
      const [audit] = await cliAudit('admin_user_created', user.uuid);
      assert.equal((audit?.details as Body | undefined)?.password_set, true);
      const mail = await inDatabase((db) =>
        db.selectFrom('email_outbox').select('template').where('to_address', '=', user.email).execute(),
      );
      assert.deepEqual(mail, []);
    });

    test('with a password, unverified: the verification mail is queued', async () => {
      const user = await create(false);
      const mail = await inDatabase((db) =>
        db.selectFrom('email_outbox').select('template').where('to_address', '=', user.email).execute(),
      );
      assert.deepEqual(
        mail.map((m) => m.template),
        ['verify_email'],
      );
    });

    test('without a password: no usable password, and the account_created mail with a set-password link', async () => {
      const username = uniqueName('nopw');
      const email = `${username}@example.com`;
      const res = await runCli(['users', 'create', email, username, '--language', 'es'], env);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, new RegExp(`User ${username} <${email}> created`));
      assert.match(res.stdout, /link to choose a password has been mailed/);
      const row = await userRow(username);
      assert.equal(row?.has_password, false);
      assert.equal(row?.language_code, 'es');
      const mail = await inDatabase((db) =>
        db.selectFrom('email_outbox').selectAll().where('to_address', '=', email).executeTakeFirstOrThrow(),
      );
      assert.equal(mail.template, 'account_created');
      assert.equal(mail.subject, 'Se ha creado una cuenta para ti');
      assert.match(mail.text_body, /\/reset-password\?token=/);
    });

    test('refusals: a weak password, a taken email or username exit 1 with the reason; bad arguments exit 2', async () => {
      const existing = await create(true);
      const weakName = uniqueName('weak');
      const weak = await runCli(
        ['users', 'create', `${weakName}@example.com`, weakName, '--password-stdin'],
        env,
        'password\n',
      );
      assert.equal(weak.code, 1);
      assert.match(weak.stderr, /Password does not meet security requirements/);
      assert.equal(await userRow(weakName), undefined);
      const takenEmail = await runCli(['users', 'create', existing.email.toUpperCase(), uniqueName('x')], env);
      assert.equal(takenEmail.code, 1);
      assert.match(takenEmail.stderr, /Email address is already registered/);
      const takenName = await runCli(['users', 'create', `${uniqueName('x')}@example.com`, existing.username], env);
      assert.equal(takenName.code, 1);
      assert.match(takenName.stderr, /Username is already taken/);
      const invalid = await runCli(['users', 'create', 'not-an-email', uniqueName('x')], env);
      assert.equal(invalid.code, 1);
      assert.match(invalid.stderr, /email/);
      const missing = await runCli(['users', 'create', 'only@example.com'], env);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /expected an email and a username/);
    });
  });

  describe('users superuser', () => {
    test('--on and --off set and clear the flag; the last superuser keeps it; neither or both exit 2', async () => {
      const user = await create(true);
      const on = await runCli(['users', 'superuser', user.username, '--on'], env);
      assert.equal(on.code, 0, on.stderr);
      assert.equal((await userRow(user.username))?.is_superuser, true);
      // Every other superuser of this database loses the flag: this one is the last.
      await inDatabase((db) =>
        db.updateTable('users').set({ is_superuser: false }).where('id', '!=', user.id).execute(),
      );
      const last = await runCli(['users', 'superuser', user.email, '--off'], env);
      assert.equal(last.code, 1);
      assert.match(last.stderr, /last active superuser/);
      assert.equal((await userRow(user.username))?.is_superuser, true);
      const other = await create(true);
      assert.equal((await runCli(['users', 'superuser', other.username, '--on'], env)).code, 0);
      const off = await runCli(['users', 'superuser', user.username, '--off'], env);
      assert.equal(off.code, 0, off.stderr);
      assert.match(off.stdout, /No longer a superuser/);
      assert.equal((await userRow(user.username))?.is_superuser, false);
      const rows = await cliAudit('admin_superuser_changed', user.uuid);
      assert.deepEqual(
        rows.map((r) => (r.details as Body).is_superuser),
        [true, false],
      );
      for (const flags of [[], ['--on', '--off']]) {
        const res = await runCli(['users', 'superuser', user.username, ...flags], env);
        assert.equal(res.code, 2);
        assert.match(res.stderr, /exactly one of --on and --off/);
      }
    });
  });

  describe('users sessions and revoke-sessions', () => {
    test('lists the live sessions, revokes one with --session, then every one', async () => {
      const user = await create(true);
      const first = await addSession(user.id);
      const second = await addSession(user.id);
      const listed = await runCli(['users', 'sessions', user.username, '--json'], env);
      assert.equal(listed.code, 0, listed.stderr);
      const sessions = JSON.parse(listed.stdout) as Body[];
      assert.deepEqual(new Set(sessions.map((s) => s.id)), new Set([first, second]));
      assert.ok(sessions.every((s) => s.current === false && s.user_agent === 'test-agent'));
      const text = await runCli(['users', 'sessions', user.username], env);
      assert.match(text.stdout, new RegExp(first));

      const one = await runCli(['users', 'revoke-sessions', user.username, '--session', first], env);
      assert.equal(one.code, 0, one.stderr);
      assert.match(one.stdout, new RegExp(`Session ${first} revoked`));
      const again = await runCli(['users', 'revoke-sessions', user.username, '--session', first], env);
      assert.equal(again.code, 1);
      assert.match(again.stderr, /no live session/);
      const left = JSON.parse((await runCli(['users', 'sessions', user.username, '--json'], env)).stdout) as Body[];
      assert.deepEqual(
        left.map((s) => s.id),
        [second],
      );

      const all = await runCli(['users', 'revoke-sessions', user.email], env);
      assert.equal(all.code, 0, all.stderr);
      const live = await inDatabase((db) =>
        db
          .selectFrom('sessions')
          .select(['id', 'revoked_reason'])
          .where('user_id', '=', user.id)
          .where('revoked_at', 'is', null)
          .execute(),
      );
      assert.deepEqual(live, []);
      const none = await runCli(['users', 'sessions', user.username], env);
      assert.equal(none.stdout, 'No live sessions.\n');
      const rows = await cliAudit('admin_sessions_revoked', user.uuid);
      assert.deepEqual(
        rows.map((r) => (r.details as Body).sessions_revoked),
        [1, 1],
      );
    });
  });

  describe('users search', () => {
    test('finds by term, --email and --username; --json gives the API page; bad options exit 2', async () => {
      const a = await create(true);
      const b = await create(true);
      const byTerm = await runCli(['users', 'search', a.username.toUpperCase()], env);
      assert.equal(byTerm.code, 0, byTerm.stderr);
      assert.match(byTerm.stdout, new RegExp(`^${a.uuid}  ${a.username} <${a.email}>\\n$`));
      const byEmail = await runCli(['users', 'search', '--email', b.email, '--json'], env);
      assert.equal(byEmail.code, 0, byEmail.stderr);
      const page = JSON.parse(byEmail.stdout) as { items: Body[]; next_cursor: string | null };
      assert.deepEqual(
        page.items.map((u) => u.uuid),
        [b.uuid],
      );
      assert.equal(page.next_cursor, null);
      const both = await runCli(['users', 'search', '--email', a.email, '--username', b.username], env);
      assert.equal(both.stdout, 'No users found.\n');
      const paged = await runCli(['users', 'search', 'cu_', '--limit', '1'], env);
      assert.match(paged.stdout, /More: --cursor \S+/);
      for (const args of [
        ['--limit', '0'],
        ['--limit', 'x'],
        ['--organization', 'nope'],
        ['a', 'b'],
      ]) {
        const res = await runCli(['users', 'search', ...args], env);
        assert.equal(res.code, 2, `${args.join(' ')}: ${res.stderr}`);
      }
      const rows = await inDatabase((db) =>
        db.selectFrom('audit_logs').selectAll().where('action', '=', 'admin_users_viewed').execute(),
      );
      assert.ok(rows.length >= 3);
      assert.ok(rows.every((r) => r.user_id === null && (r.details as Body).filters !== undefined));
    });
  });

  describe('users reset-password, export and delete', () => {
    test('reset-password queues the reset mail; audited', async () => {
      const user = await create(true);
      const res = await runCli(['users', 'reset-password', user.username], env);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /Password reset link mailed/);
      const mail = await inDatabase((db) =>
        db.selectFrom('email_outbox').selectAll().where('to_address', '=', user.email).execute(),
      );
      assert.deepEqual(
        mail.map((m) => m.template),
        ['reset_password'],
      );
      assert.match(mail[0]?.text_body ?? '', /\/reset-password\?token=/);
      await cliAudit('admin_password_reset_sent', user.uuid);
    });

    test('export prints the JSON of the API, without secrets; audited', async () => {
      const user = await create(true);
      await addSession(user.id);
      const res = await runCli(['users', 'export', user.email], env);
      assert.equal(res.code, 0, res.stderr);
      const data = JSON.parse(res.stdout) as {
        profile: Body;
        organizations: Body[];
        sessions: Body[];
        audit_logs: Body[];
      };
      assert.deepEqual(Object.keys(data).sort(), ['audit_logs', 'organizations', 'profile', 'sessions']);
      assert.equal(data.profile.uuid, user.uuid);
      assert.equal(data.sessions.length, 1);
      assert.deepEqual(data.organizations, []);
      const row = await userRow(user.username);
      assert.ok(row && !res.stdout.includes(row.password_hash));
      assert.doesNotMatch(res.stdout, /argon2|password_hash|token_hash/);
      await cliAudit('admin_user_exported', user.uuid);
    });

    test('delete removes the user and revokes their sessions; audited; unknown users exit 1, bad arguments 2', async () => {
      const user = await create(true);
      await addSession(user.id);
      const res = await runCli(['users', 'delete', user.username], env);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, new RegExp(`Deleted: ${user.username}`));
      assert.equal(await userRow(user.username), undefined);
      const [audit] = await cliAudit('admin_user_deleted', user.uuid);
      assert.equal((audit?.details as Body | undefined)?.sessions_revoked, 1);
      for (const command of ['delete', 'reset-password', 'export', 'sessions', 'revoke-sessions']) {
        const unknown = await runCli(['users', command, user.username], env);
        assert.equal(unknown.code, 1, command);
        assert.match(unknown.stderr, /no user with email or username/);
        const none = await runCli(['users', command], env);
        assert.equal(none.code, 2, command);
      }
    });

    test('delete is refused while the user is the last admin of an organization with other members', async () => {
      const owner = await create(true);
      const member = await create(true);
      await inDatabase(async (db) => {
        const org = await db
          .insertInto('organizations')
          .values({ name: 'CLI Org', slug: uniqueName('cli-org').replaceAll('_', '-') })
          .returning('id')
          .executeTakeFirstOrThrow();
        for (const [userId, name] of [
          [owner.id, 'admin'],
          [member.id, 'user'],
        ] as const) {
          const role = await db
            .insertInto('roles')
            .values({ organization_id: org.id, name, permissions: JSON.stringify([]) })
            .returning('id')
            .executeTakeFirstOrThrow();
          await db
            .insertInto('memberships')
            .values({ user_id: userId, organization_id: org.id, role_id: role.id })
            .execute();
        }
      });
      const res = await runCli(['users', 'delete', owner.email], env);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /is the last admin of "CLI Org"/);
      assert.ok(await userRow(owner.username));
    });
  });
});
