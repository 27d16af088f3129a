import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { newUser } from '../helpers.ts';
import { GatehouseProcess } from '../support/gatehouse-process.ts';
import { type Answer, closedLoop, postJson, tally } from '../support/load.ts';
import { waitUntil } from '../support/ports.ts';
import { postgresUnavailable, ThrowawayPostgres } from '../support/postgres.ts';

interface Sent extends Answer {
  username: string;
}

/** Users (of `usernames`) missing any part of what a registration with an organization creates. */
const INCOMPLETE_USERS = `
  select u.username,
         exists (select 1 from memberships m join roles r on r.id = m.role_id and r.organization_id = m.organization_id
                 where m.user_id = u.id and r.name = 'admin') as admin_membership,
         (select count(*)::int from memberships m join roles r on r.organization_id = m.organization_id
          where m.user_id = u.id) as roles,
         exists (select 1 from audit_logs a where a.user_id = u.id and a.action = 'user_registration') as audit_row,
         exists (select 1 from one_time_tokens t where t.user_id = u.id and t.purpose = 'verify_email') as token,
         exists (select 1 from email_outbox o where o.to_address = u.email and o.template = 'verify_email') as mail
  from users u where u.username = any($1)`;

describe('the process killed with SIGKILL in the middle of registrations', { skip: postgresUnavailable() }, () => {
  let cluster: ThrowawayPostgres;
  let databaseUrl: string;
  let db: pg.Client;
  const env = () => ({
    ENVIRONMENT: 'test',
    SECRET_KEY: randomBytes(32).toString('base64url'),
    DATABASE_URL: databaseUrl,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_REGISTER: '100000/1h',
  });

  before(async () => {
    cluster = await ThrowawayPostgres.start();
    databaseUrl = await cluster.createDatabase('gatehouse');
    db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
  });
  after(async () => {
    await db?.end().catch(() => {});
    await cluster?.destroy();
  });

  test('no user is left without its organization, roles, admin membership, audit row or verification mail', async () => {
    const server = await GatehouseProcess.start(env());
    let answers: Sent[] = [];
    let succeeded = 0;
    let killed = false;
    try {
      const load = closedLoop(
        6,
        () => !killed,
        async (): Promise<Sent> => {
          const user = newUser({ organization_name: `Org ${randomBytes(4).toString('hex')}` });
          const answer = await postJson(`${server.url}/api/v1/register`, user);
          if (answer.status === 201) succeeded++;
          return { ...answer, username: String(user.username) };
        },
      );
      // With six in flight, the kill lands on registrations in every stage: hashing, mid-transaction, committing.
      await waitUntil('some registrations to succeed', () => succeeded >= 8, 30_000, 10);
      await server.kill();
      killed = true;
      answers = await load;
    } finally {
      killed = true;
      await server.destroy();
    }

    const counts = tally(answers);
    assert.ok((counts['network-error'] ?? 0) > 0, `the kill cut requests off: ${JSON.stringify(counts)}`);
    assert.deepEqual(
      Object.keys(counts).filter((s) => s !== '201' && s !== 'network-error'),
      [],
      JSON.stringify(counts),
    );
    const acknowledged = answers.filter((a) => a.status === 201).map((a) => a.username);
    const { rows: present } = await db.query('select username from users where username = any($1)', [acknowledged]);
    assert.equal(present.length, acknowledged.length, 'every user answered 201 exists');

    // Users whose request was cut off either exist whole or not at all.
    const { rows } = await db.query(INCOMPLETE_USERS, [answers.map((a) => a.username)]);
    const incomplete = rows.filter((r) => !r.admin_membership || r.roles !== 3 || !r.audit_row || !r.token || !r.mail);
    assert.deepEqual(incomplete, []);
    const { rows: orphans } = await db.query(`
      select o.slug from organizations o
      where not exists (select 1 from memberships m where m.organization_id = o.id)
         or (select count(*) from roles r where r.organization_id = o.id) <> 3`);
    assert.deepEqual(orphans, [], 'no organization without its roles and member');
    const { rows: strays } = await db.query(`
      select a.id from audit_logs a
      where a.action = 'user_registration' and not exists (select 1 from users u where u.id = a.user_id)`);
    assert.deepEqual(strays, [], 'no audit row for a user that was never created');

    // A new process on the same database carries on.
    const restarted = await GatehouseProcess.start(env());
    try {
      const user = newUser({ organization_name: `Org ${randomBytes(4).toString('hex')}` });
      const res = await postJson(`${restarted.url}/api/v1/register`, user);
      assert.equal(res.status, 201, res.body);
    } finally {
      await restarted.destroy();
    }
  });
});
