import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createSuperuser } from '../../src/flows/admin.ts';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';

type Body = Record<string, unknown>;

const CLI = { ip: null, userAgent: 'test' };
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex');

async function superuserToken(app: FastifyInstance): Promise<{ id: number; token: string }> {
  const input = newUser();
  const created = await createSuperuser(app.gatehouse, input, CLI);
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/login',
    payload: { username: input.username, password: input.password },
  });
  assert.equal(res.statusCode, 200, res.body);
  return { id: created.id, token: String(json(res).access_token) };
}

describe('OpenID Connect client registry (/admin/clients)', () => {
  let app: FastifyInstance;
  let admin: { id: number; token: string };

  before(async () => {
    app = await startApp({ REQUIRE_EMAIL_VERIFICATION: 'false', REDIS_KEY_PREFIX: `t:${uniqueName('clients')}:` });
    admin = await superuserToken(app);
  });
  after(() => app.close());

  const call = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: unknown, token = admin.token) =>
    app.inject({
      method,
      url: `/api/v1${url}`,
      headers: { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });

  const metadata = (overrides: Body = {}): Body => ({
    client_name: `App ${uniqueName('rp')}`,
    redirect_uris: ['https://app.example.com/callback'],
    ...overrides,
  });

  async function register(overrides: Body = {}): Promise<Body> {
    const res = await call('POST', '/admin/clients', metadata(overrides));
    assert.equal(res.statusCode, 201, res.body);
    return json(res);
  }

  const clientRow = (clientId: string) =>
    app.gatehouse.db.selectFrom('oauth_clients').selectAll().where('client_id', '=', clientId).executeTakeFirst();

  const auditRows = (action: string, clientId: string) =>
    app.gatehouse.db
      .selectFrom('audit_logs')
      .selectAll()
      .where('action', '=', action)
      .where((eb) => eb(eb.ref('details', '->>').key('client_id' as never), '=', clientId))
      .execute();

  describe('access', () => {
    const routes = [
      ['POST', '/admin/clients'],
      ['GET', '/admin/clients'],
      ['GET', '/admin/clients/abc'],
      ['DELETE', '/admin/clients/abc'],
      ['POST', '/admin/clients/abc/rotate-secret'],
    ] as const;

    test('without a bearer token every client route answers 401 UNAUTHORIZED', async () => {
      for (const [method, url] of routes) {
        const res = await app.inject({
          method,
          url: `/api/v1${url}`,
          ...(url === '/admin/clients' && method === 'POST' ? { payload: metadata() } : {}),
        });
        assertProblem(res, 401, 'UNAUTHORIZED');
      }
    });

    test('a user who is not a superuser gets 403 FORBIDDEN, and no client is registered', async () => {
      const user = newUser();
      assert.equal((await app.inject({ method: 'POST', url: '/api/v1/register', payload: user })).statusCode, 201);
      const login = await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: user.username, password: user.password },
      });
      const token = String(json(login).access_token);
      const name = `Forbidden ${uniqueName('rp')}`;
      for (const [method, url] of routes) {
        const payload = url === '/admin/clients' && method === 'POST' ? metadata({ client_name: name }) : undefined;
        assertProblem(await call(method, url, payload, token), 403, 'FORBIDDEN');
      }
      const rows = await app.gatehouse.db
        .selectFrom('oauth_clients')
        .select('id')
        .where('client_name', '=', name)
        .execute();
      assert.equal(rows.length, 0);
    });
  });

  describe('POST /admin/clients', () => {
    test('a confidential client gets a secret once, stored only as its SHA-256, with the RFC 7591 defaults', async () => {
      const before = Math.floor(Date.now() / 1000);
      const res = await call('POST', '/admin/clients', metadata({ client_name: '  Billing  ' }));
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(res.headers['cache-control'], 'no-store');
      const body = json(res);
      assert.match(String(body.client_id), /^[0-9a-f]{32}$/);
      assert.match(String(body.client_secret), /^[A-Za-z0-9_-]{43}$/);
      assert.equal(body.client_secret_expires_at, 0);
      assert.ok(Number(body.client_id_issued_at) >= before - 1);
      assert.equal(body.client_name, 'Billing');
      assert.deepEqual(body.redirect_uris, ['https://app.example.com/callback']);
      assert.deepEqual(body.post_logout_redirect_uris, []);
      assert.equal(body.token_endpoint_auth_method, 'client_secret_basic');
      assert.deepEqual(body.grant_types, ['authorization_code', 'refresh_token']);
      assert.deepEqual(body.response_types, ['code']);
      assert.equal(body.scope, 'openid profile email offline_access organizations');
      assert.equal(body.first_party, false);

      const row = await clientRow(String(body.client_id));
      assert.ok(row);
      assert.equal(row.client_secret_hash, sha256(String(body.client_secret)));
      assert.ok(!JSON.stringify(row).includes(String(body.client_secret)), 'the secret itself is not stored');

      const audits = await auditRows('oauth_client_created', String(body.client_id));
      assert.equal(audits.length, 1);
      assert.equal(audits[0]!.user_id, admin.id);
      assert.deepEqual(audits[0]!.details, { client_id: body.client_id, client_name: 'Billing', first_party: false });
      assert.ok(!JSON.stringify(audits).includes(String(body.client_secret)));
    });

    test('a public client (token_endpoint_auth_method none) gets no secret and no hash', async () => {
      const body = await register({
        token_endpoint_auth_method: 'none',
        redirect_uris: ['com.example.app:/callback', 'http://127.0.0.1:7777/cb', 'http://[::1]/cb'],
        post_logout_redirect_uris: ['https://app.example.com/bye'],
        grant_types: ['authorization_code'],
        scope: 'openid email',
        first_party: true,
      });
      assert.equal(body.client_secret, undefined);
      assert.equal(body.client_secret_expires_at, undefined);
      assert.equal(body.token_endpoint_auth_method, 'none');
      assert.deepEqual(body.grant_types, ['authorization_code']);
      assert.equal(body.scope, 'openid email');
      assert.equal(body.first_party, true);
      const row = await clientRow(String(body.client_id));
      assert.equal(row?.client_secret_hash, null);
      assert.deepEqual(row?.post_logout_redirect_uris, ['https://app.example.com/bye']);
    });

    const bad: [string, Body, string, string][] = [
      ['a missing client_name', { client_name: undefined }, 'client_name', 'invalid_client_metadata'],
      ['a blank client_name', { client_name: '   ' }, 'client_name', 'invalid_client_metadata'],
      ['a client_name of 201 characters', { client_name: 'x'.repeat(201) }, 'client_name', 'invalid_client_metadata'],
      ['a number as client_name', { client_name: 42 }, 'client_name', 'invalid_client_metadata'],
      ['missing redirect_uris', { redirect_uris: undefined }, 'redirect_uris', 'invalid_redirect_uri'],
      ['empty redirect_uris', { redirect_uris: [] }, 'redirect_uris', 'invalid_redirect_uri'],
      ['a string as redirect_uris', { redirect_uris: 'https://a.example' }, 'redirect_uris', 'invalid_redirect_uri'],
      [
        '21 redirect_uris',
        { redirect_uris: Array.from({ length: 21 }, (_, i) => `https://a.example/${i}`) },
        'redirect_uris',
        'invalid_redirect_uri',
      ],
      ['a relative redirect URI', { redirect_uris: ['/callback'] }, 'redirect_uris.0', 'invalid_redirect_uri'],
      [
        'a redirect URI with a fragment',
        { redirect_uris: ['https://a.example/cb#x'] },
        'redirect_uris.0',
        'invalid_redirect_uri',
      ],
      [
        'a javascript: redirect URI',
        { redirect_uris: ['javascript:alert(1)'] },
        'redirect_uris.0',
        'invalid_redirect_uri',
      ],
      ['a data: redirect URI', { redirect_uris: ['data:text/html,hi'] }, 'redirect_uris.0', 'invalid_redirect_uri'],
      ['a file: redirect URI', { redirect_uris: ['file:///etc/passwd'] }, 'redirect_uris.0', 'invalid_redirect_uri'],
      [
        'a wildcard redirect URI',
        { redirect_uris: ['https://*.example.com/cb'] },
        'redirect_uris.0',
        'invalid_redirect_uri',
      ],
      [
        'a redirect URI with userinfo',
        { redirect_uris: ['https://user:pw@a.example/cb'] },
        'redirect_uris.0',
        'invalid_redirect_uri',
      ],
      [
        'a redirect URI with white space',
        { redirect_uris: ['https://a.example/c b'] },
        'redirect_uris.0',
        'invalid_redirect_uri',
      ],
      [
        'a number among redirect_uris',
        { redirect_uris: ['https://a.example/cb', 7] },
        'redirect_uris.1',
        'invalid_redirect_uri',
      ],
      [
        'a bad post-logout URI',
        { post_logout_redirect_uris: ['javascript:alert(1)'] },
        'post_logout_redirect_uris.0',
        'invalid_client_metadata',
      ],
      [
        'the password grant',
        { grant_types: ['authorization_code', 'password'] },
        'grant_types',
        'invalid_client_metadata',
      ],
      ['the implicit grant', { grant_types: ['implicit'] }, 'grant_types', 'invalid_client_metadata'],
      [
        'the client_credentials grant',
        { grant_types: ['client_credentials'] },
        'grant_types',
        'invalid_client_metadata',
      ],
      [
        'refresh_token without authorization_code',
        { grant_types: ['refresh_token'] },
        'grant_types',
        'invalid_client_metadata',
      ],
      ['a string as grant_types', { grant_types: 'authorization_code' }, 'grant_types', 'invalid_client_metadata'],
      ['response_types token', { response_types: ['token'] }, 'response_types', 'invalid_client_metadata'],
      ['an unknown scope', { scope: 'openid admin' }, 'scope', 'invalid_client_metadata'],
      ['an empty scope', { scope: '  ' }, 'scope', 'invalid_client_metadata'],
      ['an array as scope', { scope: ['openid'] }, 'scope', 'invalid_client_metadata'],
      [
        'an unknown auth method',
        { token_endpoint_auth_method: 'private_key_jwt' },
        'token_endpoint_auth_method',
        'invalid_client_metadata',
      ],
      [
        'a number as auth method',
        { token_endpoint_auth_method: 1 },
        'token_endpoint_auth_method',
        'invalid_client_metadata',
      ],
      ['a string as first_party', { first_party: 'yes' }, 'first_party', 'invalid_client_metadata'],
    ];

    for (const [what, overrides, field, error] of bad) {
      test(`${what} answers 422 VALIDATION_ERROR naming ${field} (${error})`, async () => {
        const name = `Refused ${uniqueName('rp')}`;
        const res = await call('POST', '/admin/clients', metadata({ client_name: name, ...overrides }));
        const body = assertProblem(res, 422, 'VALIDATION_ERROR');
        assert.equal(body.error, error);
        const errors = body.errors as { field: string }[];
        assert.ok(
          errors.some((e) => e.field === field),
          res.body,
        );
        const rows = await app.gatehouse.db
          .selectFrom('oauth_clients')
          .select('id')
          .where('client_name', '=', name)
          .execute();
        assert.equal(rows.length, 0);
      });
    }

    test('a body that is not an object, or none at all, answers 422', async () => {
      assertProblem(await call('POST', '/admin/clients', ['https://a.example']), 422, 'VALIDATION_ERROR');
      const text = await app.inject({
        method: 'POST',
        url: '/api/v1/admin/clients',
        headers: { authorization: `Bearer ${admin.token}`, 'content-type': 'application/json' },
        payload: '"text"',
      });
      assertProblem(text, 422, 'VALIDATION_ERROR');
      assertProblem(await call('POST', '/admin/clients'), 422, 'VALIDATION_ERROR');
    });

    test('every field wrong at once is listed, none of them a 500', async () => {
      const res = await call('POST', '/admin/clients', {
        client_name: null,
        redirect_uris: [null, {}, 'ftp:x'],
        post_logout_redirect_uris: 'x',
        token_endpoint_auth_method: ['none'],
        grant_types: [1],
        scope: 5,
        first_party: 1,
        response_types: {},
      });
      const body = assertProblem(res, 422, 'VALIDATION_ERROR');
      assert.equal(body.error, 'invalid_redirect_uri');
      const fields = (body.errors as { field: string }[]).map((e) => e.field);
      for (const field of ['client_name', 'redirect_uris.0', 'redirect_uris.2', 'post_logout_redirect_uris', 'scope']) {
        assert.ok(fields.includes(field), `${field} in ${fields.join(', ')}`);
      }
    });

    test('http on a host other than loopback is refused in production, allowed elsewhere', async () => {
      const http = { redirect_uris: ['http://app.example.com/callback'] };
      assert.equal((await call('POST', '/admin/clients', metadata(http))).statusCode, 201);

      const production = await startApp({
        ENVIRONMENT: 'production',
        PUBLIC_URL: 'https://gatehouse.example',
        REQUIRE_EMAIL_VERIFICATION: 'false',
        REDIS_KEY_PREFIX: `t:${uniqueName('clients-prod')}:`,
      });
      try {
        const { token } = await superuserToken(production);
        const post = (payload: Body) =>
          production.inject({
            method: 'POST',
            url: '/api/v1/admin/clients',
            headers: { authorization: `Bearer ${token}` },
            payload,
          });
        const refused = assertProblem(await post(metadata(http)), 422, 'VALIDATION_ERROR');
        assert.equal(refused.error, 'invalid_redirect_uri');
        const loopback = await post(metadata({ redirect_uris: ['http://localhost:3000/cb', 'http://127.0.0.1/cb'] }));
        assert.equal(loopback.statusCode, 201, loopback.body);
      } finally {
        await production.close();
      }
    });
  });

  describe('reading, rotating and deleting', () => {
    test('the list is newest first and never shows a secret or its hash', async () => {
      const older = await register();
      const newer = await register({ token_endpoint_auth_method: 'client_secret_post' });
      const res = await call('GET', '/admin/clients?limit=100');
      assert.equal(res.statusCode, 200, res.body);
      const page = json<{ items: Body[]; next_cursor: string | null }>(res);
      const ids = page.items.map((c) => c.client_id);
      assert.ok(ids.indexOf(newer.client_id) < ids.indexOf(older.client_id));
      assert.ok(ids.indexOf(older.client_id) >= 0);
      for (const secret of [older.client_secret, newer.client_secret]) {
        assert.ok(!res.body.includes(String(secret)));
        assert.ok(!res.body.includes(sha256(String(secret))));
      }
      for (const item of page.items) {
        assert.equal(item.client_secret, undefined);
        assert.equal(item.client_secret_hash, undefined);
      }
    });

    test('the list pages with next_cursor', async () => {
      await register();
      await register();
      const first = json<{ items: Body[]; next_cursor: string | null }>(await call('GET', '/admin/clients?limit=1'));
      assert.equal(first.items.length, 1);
      assert.ok(first.next_cursor);
      const second = json<{ items: Body[] }>(await call('GET', `/admin/clients?limit=1&cursor=${first.next_cursor}`));
      assert.equal(second.items.length, 1);
      assert.notEqual(second.items[0]!.client_id, first.items[0]!.client_id);
      assertProblem(await call('GET', '/admin/clients?cursor=nonsense'), 422, 'VALIDATION_ERROR');
    });

    test('GET /admin/clients/{client_id} shows one client without its secret; unknown ids are 404', async () => {
      const created = await register({ first_party: true });
      const res = await call('GET', `/admin/clients/${created.client_id}`);
      assert.equal(res.statusCode, 200, res.body);
      const { client_secret, client_secret_expires_at, ...view } = created;
      assert.deepEqual(json(res), view);
      assert.ok(!res.body.includes(String(client_secret)));
      assertProblem(await call('GET', '/admin/clients/nope'), 404, 'NOT_FOUND');
      assertProblem(await call('GET', '/admin/clients/%00'), 404, 'NOT_FOUND');
    });

    test('rotating the secret returns a new one once; only its hash is kept and the old one is gone', async () => {
      const created = await register();
      const res = await call('POST', `/admin/clients/${created.client_id}/rotate-secret`);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.headers['cache-control'], 'no-store');
      const rotated = json(res);
      assert.equal(rotated.client_id, created.client_id);
      assert.match(String(rotated.client_secret), /^[A-Za-z0-9_-]{43}$/);
      assert.notEqual(rotated.client_secret, created.client_secret);
      const row = await clientRow(String(created.client_id));
      assert.equal(row?.client_secret_hash, sha256(String(rotated.client_secret)));
      const audits = await auditRows('oauth_client_secret_rotated', String(created.client_id));
      assert.equal(audits.length, 1);
      assert.ok(!JSON.stringify(audits[0]).includes(String(rotated.client_secret)));
    });

    test('a public client has no secret to rotate (409 CONFLICT); an unknown client is 404', async () => {
      const created = await register({ token_endpoint_auth_method: 'none' });
      assertProblem(await call('POST', `/admin/clients/${created.client_id}/rotate-secret`), 409, 'CONFLICT');
      assert.equal((await clientRow(String(created.client_id)))?.client_secret_hash, null);
      assertProblem(await call('POST', '/admin/clients/nope/rotate-secret'), 404, 'NOT_FOUND');
    });

    test('deleting removes the client, what the provider kept for it and the sessions of its tokens', async () => {
      const created = await register();
      const clientId = String(created.client_id);
      const other = await register();
      const user = newUser();
      const registered = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
      assert.equal(registered.statusCode, 201, registered.body);
      const login = await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: user.username, password: user.password },
      });
      const token = String(json(login).access_token);
      // The provider's records of a grant, and its Gatehouse session, as the provider would write them.
      const userId = Number(json(registered).id);
      const session = await app.gatehouse.db
        .selectFrom('sessions')
        .select(['id', 'uuid'])
        .where('user_id', '=', userId)
        .executeTakeFirstOrThrow();
      await app.gatehouse.db
        .updateTable('sessions')
        .set({ oauth_client_id: clientId, oauth_grant_id: uniqueName('grant') })
        .where('id', '=', session.id)
        .execute();
      await app.gatehouse.db
        .insertInto('oidc_payloads')
        .values([
          { model: 'Grant', id: uniqueName('g'), payload: '{}', client_id: clientId },
          { model: 'AccessToken', id: uniqueName('a'), payload: '{}', client_id: clientId },
          { model: 'Grant', id: uniqueName('g'), payload: '{}', client_id: String(other.client_id) },
        ])
        .execute();
      assert.equal((await call('GET', '/me', undefined, token)).statusCode, 200);

      const res = await call('DELETE', `/admin/clients/${clientId}`);
      assert.equal(res.statusCode, 204, res.body);
      assert.equal(await clientRow(clientId), undefined);
      assertProblem(await call('GET', `/admin/clients/${clientId}`), 404, 'NOT_FOUND');
      assertProblem(await call('DELETE', `/admin/clients/${clientId}`), 404, 'NOT_FOUND');

      const payloads = await app.gatehouse.db
        .selectFrom('oidc_payloads')
        .select('client_id')
        .where('client_id', 'in', [clientId, String(other.client_id)])
        .execute();
      assert.deepEqual(
        payloads.map((p) => p.client_id),
        [other.client_id],
      );
      const revoked = await app.gatehouse.db
        .selectFrom('sessions')
        .select(['revoked_at', 'revoked_reason'])
        .where('id', '=', session.id)
        .executeTakeFirstOrThrow();
      assert.ok(revoked.revoked_at);
      assert.equal(revoked.revoked_reason, 'admin');
      assertProblem(await call('GET', '/me', undefined, token), 401, 'TOKEN_INVALID');

      const audits = await auditRows('oauth_client_deleted', clientId);
      assert.equal(audits.length, 1);
      assert.equal(audits[0]!.user_id, admin.id);
      assert.equal((audits[0]!.details as Body).sessions_revoked, 1);
      assert.equal((await clientRow(String(other.client_id)))?.client_id, other.client_id);
    });
  });

  test('the routes are in the OpenAPI document', async () => {
    const doc = json<{ paths: Record<string, Record<string, unknown>> }>(await app.inject('/openapi.json'));
    assert.ok(doc.paths['/api/v1/admin/clients']?.post);
    assert.ok(doc.paths['/api/v1/admin/clients']?.get);
    assert.ok(doc.paths['/api/v1/admin/clients/{client_id}']?.get);
    assert.ok(doc.paths['/api/v1/admin/clients/{client_id}']?.delete);
    assert.ok(doc.paths['/api/v1/admin/clients/{client_id}/rotate-secret']?.post);
  });
});
