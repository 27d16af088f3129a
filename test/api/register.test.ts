import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { sql } from 'kysely';
import { json, logCapture, newUser, startApp, strongPassword, uniqueName } from '../helpers.ts';
import { Browser } from '../support/browser.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;

describe('POST /api/v1/register', () => {
  let app: FastifyInstance;
  const logs = logCapture();

  before(async () => {
    app = await startApp({}, { logger: { level: 'info', stream: logs.stream } });
  });
  after(() => app.close());

  const register = (payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/json', ...headers },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });

  test('a valid registration with an organization answers 201 with the documented body', async () => {
    const user = newUser({
      email: `  ${uniqueName('John')}@Example.COM `,
      first_name: ' John ',
      last_name: 'Doe',
      organization_name: 'Acme Corporation',
      confirm_password: undefined,
    });
    const res = await register(user);
    assert.equal(res.statusCode, 201, res.body);
    const body = json(res);
    assert.deepEqual(Object.keys(body).sort(), [
      'created_at',
      'email',
      'email_verified',
      'first_name',
      'id',
      'is_active',
      'language_code',
      'last_name',
      'message',
      'name',
      'organization',
      'username',
      'uuid',
    ]);
    assert.equal(typeof body.id, 'number');
    assert.match(String(body.uuid), /^[0-9a-f-]{36}$/);
    assert.equal(body.email, String(user.email).trim().toLowerCase());
    assert.equal(body.username, user.username);
    assert.equal(body.first_name, 'John');
    assert.equal(body.last_name, 'Doe');
    assert.equal(body.language_code, 'en');
    assert.equal(body.is_active, true);
    assert.equal(body.email_verified, false);
    assert.ok(!Number.isNaN(Date.parse(String(body.created_at))));
    assert.match(String(body.created_at), /Z$/);
    assert.equal(
      body.message,
      'User account created successfully. Please verify your email address to complete registration.',
    );
    const org = body.organization as Body;
    assert.equal(org.name, 'Acme Corporation');
    assert.match(String(org.slug), /^acme-corporation(-\d+)?$/);
    assert.equal(org.role, 'admin');
    assert.equal('password_hash' in body, false);
  });

  test('the user, organization, three roles, admin membership, audit row and outbox mail all exist', async () => {
    const user = newUser({ organization_name: `Org ${uniqueName()}` });
    const res = await register(user);
    assert.equal(res.statusCode, 201, res.body);
    const body = json(res);
    const db = app.gatehouse.db;
    const row = await db
      .selectFrom('users')
      .selectAll()
      .where('uuid', '=', String(body.uuid))
      .executeTakeFirstOrThrow();
    assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    const org = await db
      .selectFrom('organizations')
      .selectAll()
      .where('uuid', '=', String((body.organization as Body).uuid))
      .executeTakeFirstOrThrow();
    const roles = await db.selectFrom('roles').select(['id', 'name']).where('organization_id', '=', org.id).execute();
    assert.deepEqual(roles.map((r) => r.name).sort(), ['admin', 'user', 'viewer']);
    const membership = await db
      .selectFrom('memberships')
      .innerJoin('roles', 'roles.id', 'memberships.role_id')
      .select('roles.name')
      .where('memberships.user_id', '=', row.id)
      .where('memberships.organization_id', '=', org.id)
      .executeTakeFirstOrThrow();
    assert.equal(membership.name, 'admin');
    const audit = await db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', 'user_registration')
      .where('user_id', '=', row.id)
      .execute();
    assert.equal(audit.length, 1);
    const mail = await db.selectFrom('email_outbox').selectAll().where('to_address', '=', row.email).execute();
    assert.equal(mail.length, 1);
    assert.equal(mail[0]?.template, 'verify_email');
    assert.match(String(mail[0]?.text_body), /http:\/\/gatehouse\.test\/verify-email\?token=[A-Za-z0-9_-]{43}/);
    const tokens = await db.selectFrom('one_time_tokens').selectAll().where('user_id', '=', row.id).execute();
    assert.equal(tokens.length, 1);
    assert.equal(tokens[0]?.purpose, 'verify_email');
    // Stored as SHA-256 hex, never the token itself.
    assert.match(String(tokens[0]?.token_hash), /^[0-9a-f]{64}$/);
    assert.ok(!String(mail[0]?.text_body).includes(String(tokens[0]?.token_hash)));
  });

  test('registration is all or nothing: a failure after the user insert leaves no rows', async () => {
    const db = app.gatehouse.db;
    await sql`create or replace function gatehouse_test_fail_outbox() returns trigger language plpgsql as $$
      begin if new.to_address like 'fail-outbox-%' then raise exception 'outbox refused'; end if; return new; end $$`.execute(
      db,
    );
    await sql`drop trigger if exists gatehouse_test_fail_outbox on email_outbox`.execute(db);
    await sql`create trigger gatehouse_test_fail_outbox before insert on email_outbox for each row execute function gatehouse_test_fail_outbox()`.execute(
      db,
    );
    try {
      const username = uniqueName();
      const orgName = `Atomic ${username}`;
      const res = await register({
        email: `fail-outbox-${username}@example.com`,
        username,
        password: strongPassword(),
        organization_name: orgName,
      });
      const body = assertProblem(res, 500, 'INTERNAL_ERROR');
      assert.ok(!JSON.stringify(body).includes('outbox refused'), 'internal message leaked');
      assert.equal(
        await db.selectFrom('users').select('id').where('username', '=', username).executeTakeFirst(),
        undefined,
      );
      assert.equal(
        await db.selectFrom('organizations').select('id').where('name', '=', orgName).executeTakeFirst(),
        undefined,
      );
      const audit = await sql<{
        n: number;
      }>`select count(*)::int as n from audit_logs where details->>'username' = ${username}`.execute(db);
      assert.equal(audit.rows[0]?.n, 0);
    } finally {
      await sql`drop trigger if exists gatehouse_test_fail_outbox on email_outbox`.execute(db);
    }
  });

  test('a form-encoded registration answers 201', async () => {
    const user = newUser({ first_name: 'Ana', language_code: 'pt-br' });
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams(user as Record<string, string>).toString(),
    });
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).language_code, 'pt-BR');
    assert.equal(json(res).organization, null);
  });

  test('username is stored lower-case and email lower-case', async () => {
    const name = uniqueName('MiXeD');
    const res = await register(newUser({ username: name, email: `${name}@EXAMPLE.com` }));
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).username, name.toLowerCase());
    assert.equal(json(res).email, `${name.toLowerCase()}@example.com`);
  });

  test('registration with a taken email answers 409 EMAIL_TAKEN', async () => {
    const user = newUser();
    assert.equal((await register(user)).statusCode, 201);
    const again = await register({ ...newUser(), email: String(user.email).toUpperCase() });
    const body = assertProblem(again, 409, 'EMAIL_TAKEN');
    assert.equal(body.detail, 'Email address is already registered');
  });

  test('registration with a taken username in another case answers 409 USERNAME_TAKEN', async () => {
    const user = newUser();
    assert.equal((await register(user)).statusCode, 201);
    const again = await register({ ...newUser(), username: String(user.username).toUpperCase() });
    const body = assertProblem(again, 409, 'USERNAME_TAKEN');
    assert.equal(body.detail, 'Username is already taken');
  });

  test('a weak password answers 422 PASSWORD_POLICY listing every failing rule', async () => {
    const res = await register(newUser({ password: 'short' }));
    const body = assertProblem(res, 422, 'PASSWORD_POLICY');
    assert.equal(body.detail, 'Password does not meet security requirements');
    assert.deepEqual(body.issues, [
      'Password must be at least 12 characters long',
      'Password must contain at least one uppercase letter',
      'Password must contain at least one digit',
      'Password must contain at least one special character',
    ]);
  });

  test('a password containing the username or a common pattern is refused', async () => {
    const user = newUser();
    const res = await register({ ...user, password: `Xy1!${user.username}Password` });
    const body = assertProblem(res, 422, 'PASSWORD_POLICY');
    assert.ok((body.issues as string[]).includes('Password must not contain your username'));
    assert.ok((body.issues as string[]).includes('Password must not contain common patterns'));
  });

  test('a breached password answers 422 PASSWORD_BREACHED with the recommendation', async () => {
    // "sonyericsson" is in the common-password corpus; case and leetspeak are folded before lookup.
    const body = assertProblem(await register(newUser({ password: 'S0nyer1c$$0n' })), 422, 'PASSWORD_BREACHED');
    assert.equal(body.recommendation, 'Please choose a different password that has not been compromised');
  });

  test('confirm_password that differs answers 422 PASSWORD_MISMATCH', async () => {
    const user = newUser();
    const res = await register({ ...user, confirm_password: `${user.password}x` });
    assertProblem(res, 422, 'PASSWORD_MISMATCH');
  });

  test('field rules answer 422 VALIDATION_ERROR listing each field', async () => {
    const res = await register({
      email: 'John Doe <john@example.com>',
      username: 'a b',
      password: strongPassword(),
      first_name: 'x'.repeat(101),
      last_name: 'Line\r\nBcc: victim@example.com',
      language_code: 'not a language',
      organization_name: '   ',
    });
    const body = assertProblem(res, 422, 'VALIDATION_ERROR');
    const fields = (body.errors as Body[]).map((e) => e.field).sort();
    assert.deepEqual(fields, ['email', 'first_name', 'language_code', 'last_name', 'organization_name', 'username']);
    for (const e of body.errors as Body[]) {
      assert.equal(typeof e.message, 'string');
      assert.equal(typeof e.code, 'string');
    }
  });

  test('the API keeps its documented answers, one problem kind at a time (the page reports them at once)', async () => {
    const form = (fields: Record<string, string>) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/register',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams(fields).toString(),
      });
    const everything = { email: 'ada@', username: 'ab', password: 'password', confirm_password: 'passw0rd' };
    const fields = assertProblem(await form(everything), 422, 'VALIDATION_ERROR');
    assert.deepEqual((fields.errors as Body[]).map((e) => e.field).sort(), ['email', 'username']);
    assert.equal(fields.issues, undefined);

    const user = newUser();
    const mismatch = assertProblem(
      await form({ ...everything, email: user.email, username: user.username }),
      422,
      'PASSWORD_MISMATCH',
    );
    assert.equal(mismatch.errors, undefined);

    const policy = assertProblem(
      await form({ email: user.email, username: user.username, password: 'password', confirm_password: 'password' }),
      422,
      'PASSWORD_POLICY',
    );
    assert.equal(policy.errors, undefined);
    assert.deepEqual(policy.issues, [
      'Password must be at least 12 characters long',
      'Password must contain at least one uppercase letter',
      'Password must contain at least one digit',
      'Password must contain at least one special character',
      'Password must not contain common patterns',
    ]);
  });

  for (const email of [
    'plain',
    'a@b',
    '"quoted"@example.com',
    'a..b@example.com',
    'a@-example.com',
    'a@example..com',
    `${'a'.repeat(65)}@example.com`,
    'a@[127.0.0.1]',
  ]) {
    test(`email ${JSON.stringify(email.slice(0, 30))} answers 422 VALIDATION_ERROR`, async () => {
      const body = assertProblem(await register(newUser({ email })), 422, 'VALIDATION_ERROR');
      assert.equal((body.errors as Body[])[0]?.field, 'email');
    });
  }

  test('a regex-DoS-shaped email is refused promptly with 422', async () => {
    const email = `${'a.'.repeat(120)}a@${'a-'.repeat(60)}!`;
    assertProblem(await register(newUser({ email })), 422, 'VALIDATION_ERROR');
    assertProblem(await register(newUser({ email: `${'a'.repeat(300)}@example.com` })), 422, 'VALIDATION_ERROR');
  });

  test('NUL bytes in any string answer 422, never 500', async () => {
    for (const field of [
      'email',
      'username',
      'password',
      'first_name',
      'last_name',
      'name',
      'organization_name',
      'language_code',
    ]) {
      const user = newUser({ [field]: field === 'password' ? `${strongPassword()}\u0000` : 'ab\u0000cd' });
      const body = assertProblem(await register(user), 422, 'VALIDATION_ERROR');
      assert.ok(
        (body.errors as Body[]).some((e) => e.field === field),
        `${field}: ${JSON.stringify(body)}`,
      );
    }
  });

  test('lone surrogates answer 422, never 500', async () => {
    const payload = `{"email":"x@example.com","username":"surrogate","password":"Aa1!aaaaaaaaa","first_name":"\\ud800"}`;
    const body = assertProblem(await register(payload), 422, 'VALIDATION_ERROR');
    assert.equal((body.errors as Body[])[0]?.field, 'first_name');
  });

  test('arrays and objects where strings belong answer 400 MALFORMED_REQUEST', async () => {
    for (const value of [['a@example.com'], { a: 1 }, 12345, true]) {
      assertProblem(await register(newUser({ email: value })), 400, 'MALFORMED_REQUEST');
    }
    assertProblem(await register(newUser({ username: 12345 })), 400, 'MALFORMED_REQUEST');
  });

  test('repeated form fields (arrays) answer 400 MALFORMED_REQUEST', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'email=a%40example.com&email=b%40example.com&username=abc&password=x',
    });
    assertProblem(res, 400, 'MALFORMED_REQUEST');
  });

  test('missing required fields answer 422 VALIDATION_ERROR naming them', async () => {
    const body = assertProblem(await register({}), 422, 'VALIDATION_ERROR');
    assert.deepEqual((body.errors as Body[]).map((e) => e.field).sort(), ['email', 'password', 'username']);
  });

  test('__proto__ and constructor.prototype keys answer 400 and pollute nothing', async () => {
    const user = newUser();
    const payload = `{"email":"${user.email}","username":"${user.username}","password":"${user.password}","__proto__":{"is_superuser":true}}`;
    assertProblem(await register(payload), 400, 'MALFORMED_REQUEST');
    const payload2 = `{"email":"${user.email}","username":"${user.username}","password":"${user.password}","constructor":{"prototype":{"polluted":true}}}`;
    assertProblem(await register(payload2), 400, 'MALFORMED_REQUEST');
    assert.equal(({} as Body).polluted, undefined);
    assert.equal(({} as Body).is_superuser, undefined);
  });

  test('deeply nested JSON answers 400, never 500', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    assertProblem(await register(`{"email":${deep}}`), 400, 'MALFORMED_REQUEST');
  });

  test('unparsable JSON and empty bodies answer 400 MALFORMED_REQUEST', async () => {
    assertProblem(await register('{"email": '), 400, 'MALFORMED_REQUEST');
    assertProblem(await register(''), 400, 'MALFORMED_REQUEST');
    assertProblem(await register('null'), 400, 'MALFORMED_REQUEST');
    assertProblem(await register('[]'), 400, 'MALFORMED_REQUEST');
  });

  test('a 1 MB password answers 413 PAYLOAD_TOO_LARGE before any hashing', async () => {
    const before = app.gatehouse.hashPool.completed;
    const res = await register(newUser({ password: `Aa1!${'x'.repeat(1024 * 1024)}` }));
    assertProblem(res, 413, 'PAYLOAD_TOO_LARGE');
    assert.equal(app.gatehouse.hashPool.completed, before);
  });

  test('a 10 KB password inside the body limit is refused by the policy before hashing', async () => {
    const before = app.gatehouse.hashPool.completed;
    const body = assertProblem(
      await register(newUser({ password: `Aa1!${'x'.repeat(10_000)}` })),
      422,
      'PASSWORD_POLICY',
    );
    assert.deepEqual(body.issues, ['Password must be at most 128 characters long']);
    assert.equal(app.gatehouse.hashPool.completed, before);
  });

  test('unsupported media types answer 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    assertProblem(await register('email=x', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    assertProblem(await register('<x/>', { 'content-type': 'application/xml' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  test('unknown fields such as is_superuser and email_verified are never applied', async () => {
    const user = newUser({
      is_superuser: true,
      email_verified: true,
      is_active: false,
      id: 999999,
      email_verified_at: '2020-01-01T00:00:00Z',
    });
    const res = await register(user);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).email_verified, false);
    assert.equal(json(res).is_active, true);
    const row = await app.gatehouse.db
      .selectFrom('users')
      .selectAll()
      .where('username', '=', String(user.username))
      .executeTakeFirstOrThrow();
    assert.equal(row.is_superuser, false);
    assert.equal(row.email_verified_at, null);
    assert.notEqual(row.id, 999999);
  });

  test('names are NFC-normalised and CR/LF in names is refused', async () => {
    const res = await register(newUser({ first_name: 'Jose\u0301' }));
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).first_name, 'Jos\u00e9');
    const bad = await register(newUser({ first_name: 'Eve\r\nX-Injected: yes' }));
    assertProblem(bad, 422, 'VALIDATION_ERROR');
  });

  test('Unicode passwords are NFC-normalised before hashing', async () => {
    const user = newUser({ password: `Ünïcödé-Pässwörd-9${uniqueName()}`.normalize('NFD') });
    assert.equal((await register(user)).statusCode, 201);
    const row = await app.gatehouse.db
      .selectFrom('users')
      .select('password_hash')
      .where('username', '=', String(user.username))
      .executeTakeFirstOrThrow();
    const check = await app.gatehouse.hasher.verify(row.password_hash, String(user.password).normalize('NFC'));
    assert.equal(check.ok, true);
  });

  test('organization slugs get a suffix on collision', async () => {
    const name = `Same Name ${uniqueName()}`;
    const a = json(await register(newUser({ organization_name: name }))).organization as Body;
    const b = json(await register(newUser({ organization_name: name }))).organization as Body;
    assert.notEqual(a.slug, b.slug);
    assert.equal(b.slug, `${a.slug}-2`);
  });

  test('the password never appears in any log line', async () => {
    const user = newUser();
    const res = await register(user);
    assert.equal(res.statusCode, 201);
    const weak = await register({ ...newUser(), password: 'weakpassword-in-log?' });
    assert.equal(weak.statusCode, 422);
    assert.ok(logs.lines.length > 0, 'expected request logs');
    for (const line of logs.lines) {
      assert.ok(!line.includes(String(user.password)), `password leaked: ${line}`);
      assert.ok(!line.includes('weakpassword-in-log?'), `password leaked: ${line}`);
    }
  });
});

describe('POST /api/v1/register: configurable password rules', () => {
  let app: FastifyInstance;
  let nist8: FastifyInstance;
  before(async () => {
    app = await startApp();
    nist8 = await startApp({ PASSWORD_POLICY: 'nist', PASSWORD_MIN_LENGTH: '8' });
  });
  after(async () => {
    await app.close();
    await nist8.close();
  });
  const post = (target: FastifyInstance, payload: Body) =>
    target.inject({ method: 'POST', url: '/api/v1/register', payload });

  test('PASSWORD_POLICY=nist PASSWORD_MIN_LENGTH=8 accepts a password failing only composition rules', async () => {
    const res = await post(nist8, newUser({ password: 'securepassword123' }));
    assert.equal(res.statusCode, 201, res.body);
    const short = assertProblem(await post(nist8, newUser({ password: 'seven77' })), 422, 'PASSWORD_POLICY');
    assert.deepEqual(short.issues, ['Password must be at least 8 characters long']);
  });

  test('the minimum is named in the message of the configured policy', async () => {
    const body = assertProblem(await post(app, newUser({ password: 'Ab1!' })), 422, 'PASSWORD_POLICY');
    assert.ok((body.issues as string[]).includes('Password must be at least 12 characters long'));
  });

  test('a common word in disguise is refused; with other words besides it registers', async () => {
    for (const password of ['P@ssw0rd1234!', 'Qw3rty!!2024']) {
      const body = assertProblem(await post(app, newUser({ password })), 422, 'PASSWORD_POLICY');
      assert.deepEqual(body.issues, ['Password must not contain common patterns'], password);
    }
    const res = await post(app, newUser({ password: 'MySecureP@ssw0rd123!' }));
    assert.equal(res.statusCode, 201, res.body);
  });
});

describe('POST /api/v1/register: the optional full name', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName('name')}:` });
  });
  after(() => app.close());
  const post = (payload: Body) => app.inject({ method: 'POST', url: '/api/v1/register', payload });

  test('is stored trimmed and NFC, and returned by registration and GET /me', async () => {
    const user = newUser({ name: '  Zoe\u0301 Ada Lovelace ' });
    const res = await post(user);
    assert.equal(res.statusCode, 201, res.body);
    assert.equal(json(res).name, 'Zoé Ada Lovelace');
    const row = await app.gatehouse.db
      .selectFrom('users')
      .select('name')
      .where('id', '=', Number(json(res).id))
      .executeTakeFirstOrThrow();
    assert.equal(row.name, 'Zoé Ada Lovelace');
    await app.gatehouse.db
      .updateTable('users')
      .set({ email_verified_at: new Date() })
      .where('id', '=', Number(json(res).id))
      .execute();
    const login = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      payload: { username: user.username, password: user.password },
    });
    assert.equal(login.statusCode, 200, login.body);
    const me = await app.inject({
      url: '/api/v1/me',
      headers: { authorization: `Bearer ${json(login).access_token}` },
    });
    assert.equal(json(me).name, 'Zoé Ada Lovelace');
  });

  test('is null when absent, empty or null, and accepted in a form body', async () => {
    for (const name of [undefined, '', '   ', null]) {
      const res = await post(newUser({ name }));
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(json(res).name, null);
    }
    const user = newUser({ name: 'Grace Hopper' });
    const form = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams(user as Record<string, string>).toString(),
    });
    assert.equal(form.statusCode, 201, form.body);
    assert.equal(json(form).name, 'Grace Hopper');
  });

  test('a name too long or with control characters answers 422 naming the field; a non-string 400', async () => {
    for (const name of ['x'.repeat(201), 'Ada\nLovelace', 'Ada\u0000']) {
      const body = assertProblem(await post(newUser({ name })), 422, 'VALIDATION_ERROR');
      assert.deepEqual(
        (body.errors as Body[]).map((e) => e.field),
        ['name'],
        JSON.stringify(body),
      );
    }
    assert.equal((await post(newUser({ name: 'x'.repeat(200) }))).statusCode, 201);
    for (const name of [['Ada'], { first: 'Ada' }, 42]) {
      const res = await post(newUser({ name }));
      assert.ok(res.statusCode === 400 || res.statusCode === 422, `${res.statusCode} ${res.body}`);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    }
  });
});

describe('POST /api/v1/register: USERNAME_REQUIRED', () => {
  let required: FastifyInstance;
  let optional: FastifyInstance;
  before(async () => {
    required = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName('unreq')}:` });
    optional = await startApp({ USERNAME_REQUIRED: 'false', REDIS_KEY_PREFIX: `t:${uniqueName('unopt')}:` });
  });
  after(async () => {
    await required.close();
    await optional.close();
  });
  const post = (app: FastifyInstance, payload: Body) =>
    app.inject({ method: 'POST', url: '/api/v1/register', payload });

  test('by default a registration without username answers 422 naming it', async () => {
    const { username: _u, ...user } = newUser();
    const body = assertProblem(await post(required, user), 422, 'VALIDATION_ERROR');
    assert.deepEqual(
      (body.errors as Body[]).map((e) => e.field),
      ['username'],
    );
    const blank = assertProblem(await post(required, newUser({ username: '  ' })), 422, 'VALIDATION_ERROR');
    assert.deepEqual(
      (blank.errors as Body[]).map((e) => e.field),
      ['username'],
    );
  });

  test('USERNAME_REQUIRED=false makes one from the email address; it is stored and signs in', async () => {
    const local = uniqueName('Mary.Jane');
    const { username: _u, ...user } = newUser({ email: `${local}@example.com` });
    const res = await post(optional, user);
    assert.equal(res.statusCode, 201, res.body);
    const username = String(json(res).username);
    assert.match(username, /^mary_jane_[0-9a-f]+_\d+_[0-9a-f]{8}$/);
    const blank = await post(optional, newUser({ username: '' }));
    assert.equal(blank.statusCode, 201, blank.body);
    assert.match(String(json(blank).username), /^user_[0-9a-f]+_\d+_[0-9a-f]{8}$/);
    await optional.gatehouse.db
      .updateTable('users')
      .set({ email_verified_at: new Date() })
      .where('username', '=', username)
      .execute();
    const login = await optional.inject({
      method: 'POST',
      url: '/api/v1/login',
      payload: { username, password: user.password },
    });
    assert.equal(login.statusCode, 200, login.body);
  });

  test('USERNAME_REQUIRED=false still checks a username that is given', async () => {
    const body = assertProblem(await post(optional, newUser({ username: 'a b' })), 422, 'VALIDATION_ERROR');
    assert.deepEqual(
      (body.errors as Body[]).map((e) => e.field),
      ['username'],
    );
    const res = await post(optional, newUser({ username: ['x'] }));
    assert.equal(res.statusCode, 400, res.body);
    const missing = assertProblem(await post(optional, {}), 422, 'VALIDATION_ERROR');
    assert.deepEqual((missing.errors as Body[]).map((e) => e.field).sort(), ['email', 'password']);
  });
  test('the registration page marks username optional with USERNAME_REQUIRED=false, and registers without one', async () => {
    const field = (html: string) => /<input[^>]*name="username"[^>]*>/.exec(html)?.[0] ?? '';
    const requiredPage = await new Browser(required).get('/register');
    assert.match(field(requiredPage.body), / required/);
    const browser = new Browser(optional);
    const page = await browser.get('/register');
    assert.doesNotMatch(field(page.body), / required/);
    assert.match(page.body, /Leave it empty to have one made from your email address/);
    const user = newUser();
    const res = await browser.submit('/register', {
      email: user.email,
      username: '',
      password: user.password,
      confirm_password: user.password,
    });
    assert.equal(res.statusCode, 303, res.body);
    const row = await optional.gatehouse.db
      .selectFrom('users')
      .select('username')
      .where('email', '=', user.email)
      .executeTakeFirstOrThrow();
    assert.match(row.username, /^[a-z0-9_]+_[0-9a-f]{8}$/);
  });
});

describe('POST /api/v1/register: refused registrations are recorded', () => {
  let app: FastifyInstance;
  before(async () => {
    app = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName('attempts')}:` });
  });
  after(() => app.close());
  const post = (payload: unknown, agent: string, type = 'application/json') =>
    app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': type, 'user-agent': agent },
      payload: typeof payload === 'string' ? payload : JSON.stringify(payload),
    });
  /** The rows of one user agent, as an operator would query them. */
  const attempts = async (agent: string) =>
    (
      await sql<Body>`SELECT * FROM registration_attempts
        WHERE attempted_at > NOW() - INTERVAL '24 hours' AND user_agent = ${agent} ORDER BY id`.execute(
        app.gatehouse.db,
      )
    ).rows;

  test('policy, duplicate and field refusals each leave a row with the reason, never the password', async () => {
    const agent = uniqueName('agent');
    const user = newUser();
    assertProblem(await post({ ...user, password: 'weak' }, agent), 422, 'PASSWORD_POLICY');
    assert.equal((await post(user, agent)).statusCode, 201);
    const other = uniqueName();
    assertProblem(await post({ ...user, username: other }, agent), 409, 'EMAIL_TAKEN');
    assertProblem(await post({ ...user, email: 'not-an-email' }, agent), 422, 'VALIDATION_ERROR');
    const rows = await attempts(agent);
    assert.deepEqual(
      rows.map((r) => [r.reason, r.email, r.username]),
      [
        ['PASSWORD_POLICY', user.email, user.username],
        ['EMAIL_TAKEN', user.email, other],
        ['VALIDATION_ERROR', 'not-an-email', user.username],
      ],
    );
    for (const row of rows) {
      assert.deepEqual(Object.keys(row).sort(), [
        'attempted_at',
        'email',
        'id',
        'ip_address',
        'reason',
        'user_agent',
        'username',
      ]);
      assert.ok(row.ip_address);
      assert.ok(!JSON.stringify(row).includes(user.password));
    }
  });

  test('refusals before the flow (missing fields, bad types, bad JSON, NUL bytes) are recorded too, never 500', async () => {
    const agent = uniqueName('agent');
    assertProblem(await post({}, agent), 422, 'VALIDATION_ERROR');
    assertProblem(
      await post({ email: ['a@example.com'], username: 'x', password: 'y' }, agent),
      400,
      'MALFORMED_REQUEST',
    );
    assertProblem(await post('{"email":', agent), 400, 'MALFORMED_REQUEST');
    assertProblem(await post(newUser({ email: 'a\u0000b@example.com' }), agent), 422, 'VALIDATION_ERROR');
    const rows = await attempts(agent);
    assert.deepEqual(
      rows.map((r) => [r.reason, r.email]),
      [
        ['VALIDATION_ERROR', null],
        ['MALFORMED_REQUEST', null],
        ['MALFORMED_REQUEST', null],
        ['VALIDATION_ERROR', null],
      ],
    );
  });

  test('rate-limited requests are not recorded', async () => {
    const limited = await startApp({ RATE_LIMIT_REGISTER: '1/1h', REDIS_KEY_PREFIX: `t:${uniqueName('lim')}:` });
    try {
      const agent = uniqueName('agent');
      const send = () =>
        limited.inject({
          method: 'POST',
          url: '/api/v1/register',
          headers: { 'user-agent': agent },
          payload: newUser({ password: 'weak' }),
        });
      assert.equal((await send()).statusCode, 422);
      for (let i = 0; i < 3; i++) assert.equal((await send()).statusCode, 429);
      const { rows } = await sql<Body>`SELECT reason FROM registration_attempts WHERE user_agent = ${agent}`.execute(
        limited.gatehouse.db,
      );
      assert.deepEqual(rows, [{ reason: 'PASSWORD_POLICY' }]);
    } finally {
      await limited.close();
    }
  });
});

describe('POST /api/v1/register: REGISTER_RETURNS_TOKENS', () => {
  test('adds the login body to the registration body; the tokens work', async () => {
    const app = await startApp({
      REGISTER_RETURNS_TOKENS: 'true',
      REQUIRE_EMAIL_VERIFICATION: 'false',
      REDIS_KEY_PREFIX: `t:${uniqueName('tokens')}:`,
    });
    try {
      const user = newUser({ name: 'Ada' });
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
      assert.equal(res.statusCode, 201, res.body);
      const body = json(res);
      assert.equal(body.username, user.username);
      assert.equal(body.token_type, 'bearer');
      assert.equal(typeof body.access_token, 'string');
      assert.equal(typeof body.refresh_token, 'string');
      assert.equal(body.expires_in, 30 * 60);
      assert.equal(typeof body.refresh_expires_in, 'number');
      assert.equal(res.headers['cache-control'], 'no-store');
      const me = await app.inject({ url: '/api/v1/me', headers: { authorization: `Bearer ${body.access_token}` } });
      assert.equal(me.statusCode, 200, me.body);
      assert.equal(json(me).username, user.username);
      const refreshed = await app.inject({
        method: 'POST',
        url: '/api/v1/refresh',
        payload: { refresh_token: body.refresh_token },
      });
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      // A refused registration gets no tokens.
      const weak = assertProblem(
        await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser({ password: 'weak' }) }),
        422,
        'PASSWORD_POLICY',
      );
      assert.equal(weak.access_token, undefined);
    } finally {
      await app.close();
    }
  });

  test('by default the registration body carries no tokens', async () => {
    const app = await startApp({ REDIS_KEY_PREFIX: `t:${uniqueName('notokens')}:` });
    try {
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(json(res).access_token, undefined);
    } finally {
      await app.close();
    }
  });
});
