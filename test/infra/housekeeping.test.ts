import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { sql } from 'kysely';
import { pino } from 'pino';
import { type DatabaseHandle, type Db, openDatabase } from '../../src/db/index.ts';
import { Housekeeper, purgeExpired } from '../../src/infra/housekeeping.ts';
import { isolatedDatabase, openIsolatedDatabase } from '../cli/support.ts';
import { uniqueName } from '../helpers.ts';

const DAY = 24 * 60 * 60 * 1000;
const NOW = new Date('2026-06-15T12:00:00Z');
const ago = (ms: number) => new Date(NOW.getTime() - ms);
const ahead = (ms: number) => new Date(NOW.getTime() + ms);
const retention = { loginAttemptsDays: 90, mailDays: 7 };

/** Inserts one row per case and returns the ids of the rows that must go and the rows that must stay. */
async function seed(db: Db) {
  const name = uniqueName('hk');
  const user = await db
    .insertInto('users')
    .values({ email: `${name}@example.com`, username: name, password_hash: '$argon2id$v=19$m=19456,t=2,p=1$x$y' })
    .returning('id')
    .executeTakeFirstOrThrow();
  const session = (expires_at: Date, revoked_at: Date | null = null) =>
    db
      .insertInto('sessions')
      .values({ uuid: randomUUID(), user_id: user.id, refresh_token_hash: randomUUID(), expires_at, revoked_at })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const token = (expires_at: Date, used_at: Date | null = null) =>
    db
      .insertInto('one_time_tokens')
      .values({ purpose: 'verify_email', token_hash: randomUUID(), user_id: user.id, expires_at, used_at })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const challenge = (expires_at: Date) =>
    db
      .insertInto('mfa_challenges')
      .values({
        token_hash: randomUUID(),
        user_id: user.id,
        identifier: name,
        source: 'untrusted',
        kind: 'api',
        expires_at,
      })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const signIn = (expires_at: Date) =>
    db
      .insertInto('email_sign_ins')
      .values({ user_id: user.id, email: `${name}@example.com`, token_hash: randomUUID(), expires_at })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const emailChange = (confirmExpires: Date, revertExpires: Date | null) =>
    db
      .insertInto('email_changes')
      .values({
        user_id: user.id,
        old_email: `${name}@example.com`,
        new_email: `${name}@example.org`,
        confirm_token_hash: randomUUID(),
        confirm_expires_at: confirmExpires,
        revert_token_hash: revertExpires ? randomUUID() : null,
        revert_expires_at: revertExpires,
      })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const attempt = (attempted_at: Date) =>
    db
      .insertInto('login_attempts')
      .values({ identifier: name, user_id: user.id, success: false, failure_reason: 'wrong_password', attempted_at })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const mail = (status: 'pending' | 'sent' | 'failed', created_at: Date, sent_at: Date | null) =>
    db
      .insertInto('email_outbox')
      .values({
        to_address: `${name}@example.com`,
        subject: 's',
        text_body: 't',
        html_body: 'h',
        template: 'verify_email',
        status,
        created_at,
        sent_at,
      })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  const oidc = async (expires_at: Date | null) => {
    const id = randomUUID();
    await db
      .insertInto('oidc_payloads')
      .values({ model: 'AccessToken', id, payload: JSON.stringify({ jti: id }), expires_at })
      .execute();
    return id;
  };
  const lockout = async (suffix: string, updated_at: Date, locked_until: Date | null) => {
    const identifier = `${name}-${suffix}`;
    await db
      .insertInto('lockouts')
      .values({ identifier, failures: 3, lock_count: 1, locked_until, updated_at })
      .execute();
    return identifier;
  };

  const delivery = (status: 'pending' | 'delivered' | 'failed', finished_at: Date | null) =>
    db
      .insertInto('webhook_deliveries')
      .values({
        msg_id: `msg_${randomUUID()}`,
        target: 'config:https://hooks.example.com/in',
        url: 'https://hooks.example.com/in',
        event_type: 'user.created',
        payload: '{}',
        seq: 0,
        status,
        finished_at,
      })
      .returning('id')
      .executeTakeFirstOrThrow()
      .then((r) => r.id);
  return {
    userId: user.id,
    gone: {
      sessions: [await session(ago(2 * DAY)), await session(ago(3 * DAY), ago(5 * DAY))],
      one_time_tokens: [await token(ago(2 * DAY)), await token(ahead(DAY), ago(2 * DAY))],
      mfa_challenges: [await challenge(ago(2 * DAY))],
      login_attempts: [await attempt(ago(91 * DAY))],
      email_outbox: [await mail('sent', ago(9 * DAY), ago(8 * DAY)), await mail('failed', ago(8 * DAY), null)],
      lockouts: [await lockout('forgotten', ago(2 * DAY), null), await lockout('old-lock', ago(3 * DAY), ago(2 * DAY))],
      email_sign_ins: [await signIn(ago(2 * DAY))],
      oidc_payloads: [await oidc(ago(2 * DAY))],
      // Never confirmed, and confirmed with an undo link that expired too.
      email_changes: [await emailChange(ago(2 * DAY), null), await emailChange(ago(8 * DAY), ago(2 * DAY))],
      webhook_deliveries: [await delivery('delivered', ago(2 * DAY)), await delivery('failed', ago(2 * DAY))],
    },
    kept: {
      // Expired less than a day ago, live, or revoked but not yet expired.
      sessions: [await session(ago(DAY / 2)), await session(ahead(DAY)), await session(ahead(DAY), ago(DAY))],
      one_time_tokens: [await token(ago(DAY / 2)), await token(ahead(DAY)), await token(ahead(DAY), ago(DAY / 2))],
      mfa_challenges: [await challenge(ago(DAY / 2)), await challenge(ahead(DAY))],
      login_attempts: [await attempt(ago(89 * DAY))],
      // Recently sent, and a mail still being retried however old.
      email_outbox: [await mail('sent', ago(3 * DAY), ago(2 * DAY)), await mail('pending', ago(30 * DAY), null)],
      // Recent failures, and a long lock still in force.
      lockouts: [await lockout('recent', ago(DAY / 2), null), await lockout('long-lock', ago(10 * DAY), ahead(DAY))],
      email_sign_ins: [await signIn(ago(DAY / 2)), await signIn(ahead(DAY))],
      // Expired less than a day ago, live, and a row without an expiry (none the provider writes today).
      oidc_payloads: [await oidc(ago(DAY / 2)), await oidc(ahead(DAY)), await oidc(null)],
      // A live confirmation link, one expired less than a day ago, and a confirmed change whose undo link still works.
      email_changes: [
        await emailChange(ahead(DAY), null),
        await emailChange(ago(DAY / 2), null),
        await emailChange(ago(3 * DAY), ahead(4 * DAY)),
      ],
      // Delivered less than a day ago, and one still being retried.
      webhook_deliveries: [await delivery('delivered', ago(DAY / 2)), await delivery('pending', null)],
    },
  };
}

type Seeded = Awaited<ReturnType<typeof seed>>;
type Table = keyof Seeded['gone'];

async function present(db: Db, table: Table, keys: (number | string)[]): Promise<(number | string)[]> {
  if (table === 'oidc_payloads') {
    const rows = await db
      .selectFrom('oidc_payloads')
      .select('id')
      .where('model', '=', 'AccessToken')
      .where('id', 'in', keys as string[])
      .execute();
    return rows.map((r) => r.id);
  }
  if (table === 'lockouts') {
    const rows = await db
      .selectFrom('lockouts')
      .select('identifier')
      .where('identifier', 'in', keys as string[])
      .execute();
    return rows.map((r) => r.identifier);
  }
  const rows = await db
    .selectFrom(table)
    .select('id')
    .where('id', 'in', keys as number[])
    .execute();
  return rows.map((r) => r.id);
}

describe('housekeeping', () => {
  let opened: Awaited<ReturnType<typeof openIsolatedDatabase>>;
  let database: DatabaseHandle;

  before(async () => {
    opened = await openIsolatedDatabase();
    database = opened.database;
  });
  after(() => opened.close());

  test('deletes what nobody can use any more, keeps everything else, and never touches users or the audit log', async () => {
    const db = database.db;
    const seeded = await seed(db);
    const auditBefore = await db
      .selectFrom('audit_logs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();

    const purged = await purgeExpired(db, NOW, retention);

    for (const table of Object.keys(seeded.gone) as Table[]) {
      assert.deepEqual(await present(db, table, seeded.gone[table]), [], `${table}: expired rows deleted`);
      assert.deepEqual(
        [...(await present(db, table, seeded.kept[table]))].sort(),
        [...seeded.kept[table]].sort(),
        `${table}: rows still in use kept`,
      );
      assert.ok(purged[table] >= seeded.gone[table].length, `${table}: counted`);
    }
    assert.ok(await db.selectFrom('users').select('id').where('id', '=', seeded.userId).executeTakeFirst());
    const auditAfter = await db
      .selectFrom('audit_logs')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    assert.equal(Number(auditAfter.n), Number(auditBefore.n));

    const again = await purgeExpired(db, NOW, retention);
    assert.deepEqual(again, {
      sessions: 0,
      one_time_tokens: 0,
      mfa_challenges: 0,
      webauthn_challenges: 0,
      login_attempts: 0,
      registration_attempts: 0,
      email_outbox: 0,
      lockouts: 0,
      email_sign_ins: 0,
      oidc_payloads: 0,
      email_changes: 0,
      webhook_deliveries: 0,
    });
  });

  test('registration attempts go after the login-attempt retention', async () => {
    const db = database.db;
    const tag = `housekeeping-${Date.now()}`;
    const insert = (days: number) =>
      db
        .insertInto('registration_attempts')
        .values({ attempted_at: ago(days * DAY), email: tag, reason: 'PASSWORD_POLICY' })
        .returning('attempted_at')
        .executeTakeFirstOrThrow();
    await insert(91);
    const kept = await insert(89);
    await purgeExpired(db, NOW, { loginAttemptsDays: 90, mailDays: 7 });
    const rows = await db.selectFrom('registration_attempts').select('attempted_at').where('email', '=', tag).execute();
    assert.deepEqual(rows, [kept]);
  });

  test('the retention settings move the cut-off', async () => {
    const db = database.db;
    const seeded = await seed(db);
    await purgeExpired(db, NOW, { loginAttemptsDays: 30, mailDays: 1 });
    assert.deepEqual(await present(db, 'login_attempts', seeded.kept.login_attempts), []);
    const recentSent = seeded.kept.email_outbox[0] as number;
    assert.deepEqual(await present(db, 'email_outbox', [recentSent]), []);
  });

  test('a backlog larger than one chunk is deleted completely', async () => {
    const db = database.db;
    const { userId } = await seed(db);
    await sql`insert into login_attempts (identifier, user_id, success, attempted_at)
      select 'backlog', ${userId}, false, ${ago(200 * DAY)} from generate_series(1, 12000)`.execute(db);
    const purged = await purgeExpired(db, NOW, retention);
    assert.ok(purged.login_attempts >= 12_000, String(purged.login_attempts));
    const left = await db
      .selectFrom('login_attempts')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('identifier', '=', 'backlog')
      .executeTakeFirstOrThrow();
    assert.equal(Number(left.n), 0);
  });

  test('the housekeeper runs passes on its interval, counts what it deleted, and stops', async () => {
    const db = database.db;
    const seeded = await seed(db);
    const passes: Record<string, number>[] = [];
    const keeper = new Housekeeper({
      db,
      log: pino({ level: 'silent' }),
      now: () => NOW,
      retention,
      intervalMs: 20,
      onPurged: (purged) => passes.push({ ...purged }),
    });
    keeper.start();
    const deadline = Date.now() + 30_000;
    while (passes.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await keeper.stop();
    assert.ok(passes.length >= 2, 'at least two scheduled passes');
    assert.ok((passes[0]?.sessions ?? 0) >= seeded.gone.sessions.length);
    assert.deepEqual(await present(db, 'sessions', seeded.gone.sessions), []);
    const after = passes.length;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(passes.length, after, 'no pass after stop()');
  });

  test('an interval of 0 schedules nothing; a failing pass is logged and answers undefined', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    const idle = new Housekeeper({ db: database.db, log, now: () => NOW, retention, intervalMs: 0 });
    idle.start();
    await idle.stop();

    const other = await isolatedDatabase();
    const closed = await openDatabase(other.url, other.dataDir);
    await closed.close();
    const broken = new Housekeeper({ db: closed.db, log, now: () => NOW, retention, intervalMs: 0 });
    try {
      assert.equal(await broken.runNow(), undefined);
    } finally {
      await other.cleanup();
    }
    assert.ok(
      lines.some((line) => line.includes('housekeeping pass failed')),
      lines.join('\n'),
    );
  });
});
