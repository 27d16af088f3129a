/**
 * The attack: injection through identifiers and keys. SQL metacharacters in
 * usernames, e-mail addresses, passwords, path identifiers and query
 * parameters, hoping to change a statement; prototype-pollution keys
 * (`__proto__`, `constructor.prototype`) in JSON bodies, forms, query
 * strings and cookies, hoping to plant a property on every object of the
 * process (an `is_superuser` that every user then has); extra fields hoping
 * to be assigned (mass assignment). Gatehouse builds every statement with
 * Kysely, values always bound as parameters; identifiers are checked
 * against their rules (src/domain/account-rules.ts, identifiers.ts) and path
 * identifiers must be UUIDs before any query; the JSON parser refuses
 * `__proto__` and `constructor.prototype` outright (400 MALFORMED_REQUEST,
 * src/plugin.ts), and routes read only the fields they name. The answer is
 * a clean 4xx problem+json or the normal one, never a 500; afterwards
 * `Object.prototype` is untouched and the tables are intact.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { call, createOrganization, type SignedUp, signUp } from '../api/org-helpers.ts';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';
import { Browser } from '../support/browser.ts';
import { assertProblem } from '../support/problem.ts';

const SQL = [
  "' OR '1'='1",
  "' OR 1=1 --",
  "admin'--",
  "'; DROP TABLE users; --",
  '"; DROP TABLE sessions; --',
  "1' UNION SELECT password_hash FROM users --",
  "'; SELECT pg_sleep(10); --",
  "\\'; DELETE FROM users WHERE ''='",
  "%' OR email LIKE '%",
  '$1',
  '1;2',
];

const TABLES = ['users', 'sessions', 'organizations', 'roles', 'memberships', 'audit_logs', 'login_attempts'] as const;

/** A clean answer: never a 5xx; a 4xx is problem+json with a code. */
function assertClean(res: LightMyRequestResponse, what: string): void {
  assert.ok(res.statusCode < 500, `${what}: ${res.statusCode} ${res.body}`);
  if (res.statusCode >= 400 && !String(res.headers['content-type']).startsWith('text/html')) {
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/, what);
    assert.equal(typeof json(res).code, 'string', what);
  }
}

/** Own properties of Object.prototype: the same before and after every test. */
const PRISTINE = Object.getOwnPropertyNames(Object.prototype).sort();

function assertNotPolluted(): void {
  assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), PRISTINE);
  const probe: Record<string, unknown> = {};
  for (const key of ['polluted', 'is_superuser', 'isAdmin', 'role', 'x']) assert.equal(probe[key], undefined, key);
}

describe('injection through identifiers and keys', () => {
  let app: FastifyInstance;
  let alice: SignedUp;
  let counts: Record<string, number>;
  /** Users the tests registered on purpose, for the final count. */
  let registered = 0;

  before(async () => {
    // The lockout would answer 423 after five failures of one identifier: this file is about what the failures are.
    app = await startApp({
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      RATE_LIMIT_FORGOT_PASSWORD: '100000/1h',
      LOCKOUT_THRESHOLD: '1000',
    });
    alice = await signUp(app);
    await app.gatehouse.db.updateTable('users').set({ is_superuser: true }).where('id', '=', alice.id).execute();
    counts = await rowCounts();
  });
  after(() => app.close());
  afterEach(assertNotPolluted);

  async function rowCounts(): Promise<Record<string, number>> {
    const entries = await Promise.all(
      TABLES.map(async (table) => {
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`.execute(
          app.gatehouse.db,
        );
        return [table, rows[0]?.n ?? -1] as const;
      }),
    );
    return Object.fromEntries(entries);
  }

  describe('SQL metacharacters', () => {
    test('as the login identifier or password: 401 INVALID_CREDENTIALS, like any unknown user; no session', async () => {
      for (const value of SQL) {
        assertProblem(
          await call(app, 'POST', '/api/v1/login', undefined, { username: value, password: value }),
          401,
          'INVALID_CREDENTIALS',
        );
        // With Alice's real identifier and an injected password.
        assertProblem(
          await call(app, 'POST', '/api/v1/login', undefined, { username: alice.username, password: `x${value}` }),
          401,
          'INVALID_CREDENTIALS',
        );
        assertProblem(
          await call(app, 'POST', '/api/v1/login', undefined, {
            username: `${alice.email}${value}`,
            password: alice.password,
          }),
          401,
          'INVALID_CREDENTIALS',
        );
      }
      // A NUL byte cannot be stored or compared: refused as a field error.
      assertProblem(
        await call(app, 'POST', '/api/v1/login', undefined, {
          username: `${alice.username}\u0000' OR 1=1`,
          password: 'x',
        }),
        422,
        'VALIDATION_ERROR',
      );
      const sessions = await app.gatehouse.db
        .selectFrom('sessions')
        .select('id')
        .where('user_id', '=', alice.id)
        .execute();
      assert.equal(sessions.length, 1, 'only the session of signUp');
    });

    test('as a username: 422 VALIDATION_ERROR naming the field; in an e-mail address: refused, or stored exactly as sent', async () => {
      for (const value of SQL) {
        const res = await call(app, 'POST', '/api/v1/register', undefined, newUser({ username: value }));
        const body = assertProblem(res, 422, 'VALIDATION_ERROR');
        assert.ok(
          (body.errors as { field: string }[]).some((e) => e.field === 'username'),
          res.body,
        );
      }
      // Quotes, dashes and `$` are valid in the local part of an address; spaces, `;` and `"` are not.
      const accepted: string[] = [];
      for (const value of SQL) {
        const email = `${value}${uniqueName('x')}@example.com`;
        const res = await call(app, 'POST', '/api/v1/register', undefined, newUser({ email }));
        if (res.statusCode === 201) {
          registered++;
          accepted.push(value);
          const row = await app.gatehouse.db
            .selectFrom('users')
            .select('email')
            .where('uuid', '=', String(json(res).uuid))
            .executeTakeFirstOrThrow();
          assert.equal(row.email, email.toLowerCase(), 'stored as data, exactly');
        } else {
          const body = assertProblem(res, 422, 'VALIDATION_ERROR');
          assert.ok(
            (body.errors as { field: string }[]).some((e) => e.field === 'email'),
            res.body,
          );
        }
      }
      assert.deepEqual(accepted, ["admin'--", '$1']);
      assert.equal((await rowCounts()).users, (counts.users ?? 0) + registered);
    });

    test('as the address of forgot-password: 422 VALIDATION_ERROR, or the usual 202 for a valid-looking one', async () => {
      for (const value of SQL) {
        const res = await call(app, 'POST', '/api/v1/forgot-password', undefined, { email: value });
        assertProblem(res, 422, 'VALIDATION_ERROR');
      }
      // Quotes are valid in the local part of an address: the same 202 as any address, and a bound parameter.
      const res = await call(app, 'POST', '/api/v1/forgot-password', undefined, { email: "o'brien'--@example.com" });
      assert.equal(res.statusCode, 202, res.body);
    });

    test('as a path identifier (organization, member, session, invitation, user): 404 NOT_FOUND, nothing touched', async () => {
      const org = await createOrganization(app, alice.token, `Acme ${uniqueName()}`);
      for (const value of [...SQL, '1', '0', '-1', "00000000-0000-4000-8000-000000000000' OR '1'='1"]) {
        const id = encodeURIComponent(value);
        const urls: ['GET' | 'PATCH' | 'DELETE', string, unknown?][] = [
          ['GET', `/api/v1/organizations/${id}`],
          ['PATCH', `/api/v1/organizations/${id}`, { name: 'Renamed' }],
          ['DELETE', `/api/v1/organizations/${id}`],
          ['PATCH', `/api/v1/organizations/${String(org.uuid)}/members/${id}`, { role: 'viewer' }],
          ['DELETE', `/api/v1/organizations/${String(org.uuid)}/members/${id}`],
          ['DELETE', `/api/v1/organizations/${String(org.uuid)}/invitations/${id}`],
          ['DELETE', `/api/v1/sessions/${id}`],
          ['PATCH', `/api/v1/admin/users/${id}`, { is_active: false }],
        ];
        for (const [method, url, payload] of urls) {
          assertProblem(await call(app, method, url, alice.token, payload), 404, 'NOT_FOUND');
        }
      }
      assert.equal((await call(app, 'GET', `/api/v1/organizations/${String(org.uuid)}`, alice.token)).statusCode, 200);
    });

    test('as query parameters: a filter that matches nothing, or 422 for a malformed value; never a 500', async () => {
      // (Every address here holds `_`, from uniqueName: `%` is the wildcard that would show everyone.)
      for (const wildcard of ['%', '%%', '%@%', '\\']) {
        const users = await call(app, 'GET', `/api/v1/admin/users?search=${encodeURIComponent(wildcard)}`, alice.token);
        assert.equal(users.statusCode, 200, users.body);
        assert.deepEqual(json(users).items, [], `a LIKE wildcard ${wildcard} matches no one`);
      }
      for (const value of SQL) {
        const q = encodeURIComponent(value);
        const audit = await call(app, 'GET', `/api/v1/admin/audit-logs?action=${q}`, alice.token);
        assert.equal(audit.statusCode, 200, audit.body);
        assert.deepEqual(json(audit).items, [], 'no audit action has that name');
        const users = await call(app, 'GET', `/api/v1/admin/users?search=${q}`, alice.token);
        assert.equal(users.statusCode, 200, users.body);
        // The term is matched literally (`%` and `_` escaped): only users whose address holds it.
        for (const found of json<{ items: { email: string }[] }>(users).items) {
          assert.ok(found.email.includes(value.toLowerCase()), `${value} matched ${found.email}`);
        }
        const attempts = await call(app, 'GET', `/api/v1/admin/login-attempts?identifier=${q}`, alice.token);
        assertClean(attempts, `identifier=${value}`);
        for (const url of [
          `/api/v1/admin/audit-logs?since=${q}`,
          `/api/v1/admin/audit-logs?user=${q}`,
          `/api/v1/admin/users?cursor=${q}`,
          `/api/v1/admin/users?limit=${q}`,
          `/api/v1/organizations?cursor=${q}`,
          `/api/v1/sessions?cursor=${q}`,
        ]) {
          const res = await call(app, 'GET', url, alice.token);
          assertClean(res, url);
          if (res.statusCode !== 200) assert.ok([400, 422].includes(res.statusCode), `${url}: ${res.body}`);
        }
      }
    });

    test('in free text (organization name, profile names): stored exactly as sent, as data', async () => {
      const name = `Robert'); DROP TABLE organizations; -- ${uniqueName()}`.slice(0, 100);
      const org = await createOrganization(app, alice.token, name);
      assert.equal(org.name, name);
      const patched = await call(app, 'PATCH', '/api/v1/me', alice.token, {
        first_name: "'; UPDATE users SET is_superuser = true; --",
        last_name: '" OR ""="',
      });
      assert.equal(patched.statusCode, 200, patched.body);
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select(['first_name', 'last_name'])
        .where('id', '=', alice.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(row, { first_name: "'; UPDATE users SET is_superuser = true; --", last_name: '" OR ""="' });
      const stored = await app.gatehouse.db
        .selectFrom('organizations')
        .select('name')
        .where('uuid', '=', String(org.uuid))
        .executeTakeFirstOrThrow();
      assert.equal(stored.name, name);
    });

    test('afterwards every table is there and only the rows the tests made were added', async () => {
      const now = await rowCounts();
      for (const table of TABLES) assert.ok((now[table] ?? -1) >= (counts[table] ?? 0), table);
      assert.equal(now.users, (counts.users ?? 0) + registered, 'no user was created or deleted but those registered');
      const superusers = await app.gatehouse.db
        .selectFrom('users')
        .select('id')
        .where('is_superuser', '=', true)
        .execute();
      assert.deepEqual(
        superusers.map((u) => u.id),
        [alice.id],
      );
    });
  });

  describe('prototype-pollution keys', () => {
    const POLLUTING_JSON = [
      '{"__proto__":{"polluted":"yes","is_superuser":true}}',
      '{"constructor":{"prototype":{"polluted":"yes"}}}',
      '{"profile":{"__proto__":{"polluted":"yes"}}}',
      '{"a":[{"__proto__":{"polluted":"yes"}}]}',
    ];

    /** A body with the routes's real fields and the polluting key merged in. */
    const withFields = (polluting: string, fields: Record<string, unknown>) =>
      `${JSON.stringify(fields).slice(0, -1)},${polluting.slice(1)}`;

    test('in a JSON body, on every kind of route: 400 MALFORMED_REQUEST, nothing done', async () => {
      const bob = await signUp(app);
      const org = await createOrganization(app, bob.token, `Org ${uniqueName()}`);
      const routes: [string, string, Record<string, unknown>, string?][] = [
        ['POST', '/api/v1/register', newUser()],
        ['POST', '/api/v1/login', { username: bob.username, password: bob.password }],
        ['POST', '/api/v1/login/json', { username: bob.username, password: bob.password }],
        ['POST', '/api/v1/refresh', { refresh_token: 'x' }],
        ['POST', '/api/v1/forgot-password', { email: bob.email }],
        ['PATCH', '/api/v1/me', { first_name: 'Polluted' }, bob.token],
        ['POST', '/api/v1/organizations', { name: `Polluted ${uniqueName()}` }, bob.token],
        ['PATCH', `/api/v1/organizations/${String(org.uuid)}`, { name: 'Polluted' }, bob.token],
        [
          'POST',
          `/api/v1/organizations/${String(org.uuid)}/invitations`,
          { email: `${uniqueName()}@example.com`, role: 'user' },
          bob.token,
        ],
      ];
      for (const [method, url, fields, token] of routes) {
        for (const polluting of POLLUTING_JSON) {
          const res = await app.inject({
            method: method as 'POST',
            url,
            headers: { 'content-type': 'application/json', ...(token && { authorization: `Bearer ${token}` }) },
            payload: withFields(polluting, fields),
          });
          const body = assertProblem(res, 400, 'MALFORMED_REQUEST');
          assert.equal(body.detail, 'Request body could not be parsed', `${method} ${url} ${polluting}`);
        }
      }
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select(['first_name', 'is_superuser'])
        .where('id', '=', bob.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(row, { first_name: null, is_superuser: false });
      const orgs = json<unknown[]>(await call(app, 'GET', '/api/v1/organizations', bob.token));
      assert.equal(orgs.length, 1, 'no organization was created');
    });

    test('in a form body, a query string or a cookie: the normal answer, nothing planted', async () => {
      const form = (url: string, payload: string, cookie?: string) =>
        app.inject({
          method: 'POST',
          url,
          headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie && { cookie }) },
          payload,
        });
      const keys =
        '__proto__[polluted]=yes&__proto__=yes&constructor[prototype][polluted]=yes&constructor.prototype.polluted=yes';
      const login = await form('/api/v1/login', `username=${alice.username}&password=wrong&${keys}`);
      assertProblem(login, 401, 'INVALID_CREDENTIALS');
      const user = newUser();
      const registered = await form('/api/v1/register', `${new URLSearchParams(user).toString()}&${keys}`);
      assert.equal(registered.statusCode, 201, registered.body);
      assert.equal(json(registered).is_superuser, undefined);

      const browser = new Browser(app);
      browser.cookies.set('__proto__', 'yes');
      browser.cookies.set('constructor', 'yes');
      const page = await browser.get(`/login?__proto__[polluted]=yes&constructor[prototype][polluted]=yes`);
      assert.equal(page.statusCode, 200);
      const csrf = /name="csrf_token" value="([^"]+)"/.exec(page.body)?.[1] as string;
      const posted = await browser.post('/login', { csrf_token: csrf, username: alice.username, password: 'wrong' });
      assert.equal(posted.statusCode, 401, posted.body);

      const listed = await call(
        app,
        'GET',
        '/api/v1/organizations?__proto__[polluted]=yes&constructor[prototype][x]=1',
        alice.token,
      );
      assertClean(listed, 'query string');
    });

    test('extra fields (is_superuser, is_active, email_verified, id) are not assigned: refused or ignored', async () => {
      const user = newUser();
      const res = await call(app, 'POST', '/api/v1/register', undefined, {
        ...user,
        is_superuser: true,
        is_active: true,
        email_verified: true,
        email_verified_at: new Date().toISOString(),
        id: 1,
        uuid: '00000000-0000-4000-8000-000000000000',
      });
      // Registration ignores fields it does not know.
      assert.equal(res.statusCode, 201, res.body);
      const row = await app.gatehouse.db
        .selectFrom('users')
        .select(['id', 'uuid', 'is_superuser', 'email_verified_at'])
        .where('username', '=', user.username)
        .executeTakeFirstOrThrow();
      assert.equal(row.is_superuser, false);
      assert.equal(row.email_verified_at, null);
      assert.notEqual(row.id, 1);
      assert.notEqual(row.uuid, '00000000-0000-4000-8000-000000000000');
      const bob = await signUp(app);
      const patched = await call(app, 'PATCH', '/api/v1/me', bob.token, { is_superuser: true, email: 'x@evil.test' });
      assertProblem(patched, 422, 'VALIDATION_ERROR');
      const after = await app.gatehouse.db
        .selectFrom('users')
        .select(['is_superuser', 'email'])
        .where('id', '=', bob.id)
        .executeTakeFirstOrThrow();
      assert.deepEqual(after, { is_superuser: false, email: bob.email });
    });
  });
});
