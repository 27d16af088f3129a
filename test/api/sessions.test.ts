import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import type { DatabaseHandle } from '../../src/db/index.ts';
import { revokeUserSessions } from '../../src/infra/sessions.ts';
import { sha256Hex } from '../../src/infra/sha256.ts';
import { json } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';
import {
  type Body,
  bearer,
  createAccount,
  login,
  refreshRequest,
  startAuthApp,
  type TestAccount,
  type Tokens,
  testDatabase,
} from './auth-helpers.ts';

let database: DatabaseHandle;
before(async () => {
  database = await testDatabase();
});
after(() => database.close());

const sid = (token: string) => String(decodeJwt(token).sid);

describe('POST /api/v1/refresh', () => {
  let app: FastifyInstance;
  let account: TestAccount;
  const clock = testClock();

  before(async () => {
    app = await startAuthApp({}, { clock, database });
    account = await createAccount(app);
  });
  after(() => app.close());

  const me = (token: string) => app.inject({ url: '/api/v1/me', headers: bearer(token) });
  const session = (uuid: string) =>
    app.gatehouse.db.selectFrom('sessions').selectAll().where('uuid', '=', uuid).executeTakeFirstOrThrow();

  test('rotates: a new pair, the old refresh token spent, the session row advanced, an audit row', async () => {
    const first = await login(app, account);
    clock.advance(60_000);
    const res = await refreshRequest(app, first.refresh_token);
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.headers['cache-control'], 'no-store');
    const second = json<Tokens>(res);
    assert.notEqual(second.refresh_token, first.refresh_token);
    assert.notEqual(second.access_token, first.access_token);
    assert.equal(second.token_type, 'bearer');
    assert.equal(second.expires_in, 1800);
    assert.equal(second.refresh_expires_in, 604800);
    assert.equal(sid(second.access_token), sid(first.access_token));
    assert.equal((await me(second.access_token)).statusCode, 200);

    const row = await session(sid(first.access_token));
    assert.equal(row.generation, 1);
    assert.equal(row.previous_token_hash, sha256Hex(String(decodeJwt(first.refresh_token).jti)));
    assert.equal(row.refresh_token_hash, sha256Hex(String(decodeJwt(second.refresh_token).jti)));
    assert.equal(row.rotated_at?.getTime(), clock.now().getTime());
    assert.equal(row.last_used_at.getTime(), clock.now().getTime());
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'token_refresh')
      .where('user_id', '=', account.id)
      .execute();
    assert.ok(audit.some((a) => (a.details as Body).session_uuid === row.uuid));
  });

  test('a spent token inside the reuse interval gets the current successor, not a fork', async () => {
    const first = await login(app, account);
    const winner = json<Tokens>(await refreshRequest(app, first.refresh_token));
    clock.advance(9_000);
    const late = await refreshRequest(app, first.refresh_token);
    assert.equal(late.statusCode, 200, late.body);
    const again = json<Tokens>(late);
    assert.equal(again.refresh_token, winner.refresh_token);
    assert.equal((await me(again.access_token)).statusCode, 200);
    const row = await session(sid(first.access_token));
    assert.equal(row.generation, 1);
    assert.equal(row.revoked_at, null);
    // The successor keeps working for both holders.
    const next = await refreshRequest(app, again.refresh_token);
    assert.equal(next.statusCode, 200, next.body);
  });

  test('a spent token after the reuse interval revokes the whole session: 401 REFRESH_TOKEN_REUSED and an audit row', async () => {
    const first = await login(app, account);
    const second = json<Tokens>(await refreshRequest(app, first.refresh_token));
    clock.advance(11_000);
    const reused = await refreshRequest(app, first.refresh_token);
    const body = assertProblem(reused, 401, 'REFRESH_TOKEN_REUSED');
    assert.equal(body.error, 'invalid_grant');
    assert.equal(reused.headers['www-authenticate'], 'Bearer error="invalid_token"');

    const row = await session(sid(first.access_token));
    assert.ok(row.revoked_at instanceof Date);
    assert.equal(row.revoked_reason, 'refresh_token_reuse');
    // Everything the family holds is dead: the current refresh token and the access tokens.
    assertProblem(await refreshRequest(app, second.refresh_token), 401, 'TOKEN_INVALID');
    assertProblem(await me(second.access_token), 401, 'TOKEN_INVALID');
    assertProblem(await me(first.access_token), 401, 'TOKEN_INVALID');
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select(['user_id', 'details'])
      .where('action', '=', 'refresh_token_reuse')
      .execute();
    assert.ok(audit.some((a) => a.user_id === account.id && (a.details as Body).session_uuid === row.uuid));
  });

  test('a token two generations old is reuse even inside the interval', async () => {
    const first = await login(app, account);
    const second = json<Tokens>(await refreshRequest(app, first.refresh_token));
    json<Tokens>(await refreshRequest(app, second.refresh_token));
    assertProblem(await refreshRequest(app, first.refresh_token), 401, 'REFRESH_TOKEN_REUSED');
  });

  test('parallel refreshes with one token never create two live successors', async () => {
    const first = await login(app, account);
    const results = await Promise.all(Array.from({ length: 12 }, () => refreshRequest(app, first.refresh_token)));
    for (const res of results) assert.equal(res.statusCode, 200, res.body);
    const successors = new Set(results.map((r) => json<Tokens>(r).refresh_token));
    assert.equal(successors.size, 1);
    const row = await session(sid(first.access_token));
    assert.equal(row.generation, 1);
    assert.equal(row.revoked_at, null);
    const [successor] = successors;
    assert.equal((await refreshRequest(app, successor as string)).statusCode, 200);
  });

  test('the form grant (grant_type=refresh_token) works; other grant types are refused', async () => {
    const first = await login(app, account);
    const form = (fields: Record<string, string>) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/refresh',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams(fields).toString(),
      });
    const ok = await form({ grant_type: 'refresh_token', refresh_token: first.refresh_token });
    assert.equal(ok.statusCode, 200, ok.body);
    const wrong = assertProblem(await form({ grant_type: 'password', refresh_token: 'x' }), 400, 'MALFORMED_REQUEST');
    assert.equal(wrong.error, 'unsupported_grant_type');
  });

  test('missing, garbage and mistyped refresh tokens answer 4xx with an RFC 6749 error', async () => {
    const missing = assertProblem(
      await app.inject({ method: 'POST', url: '/api/v1/refresh', payload: {} }),
      422,
      'VALIDATION_ERROR',
    );
    assert.equal(missing.error, 'invalid_request');
    assertProblem(await app.inject({ method: 'POST', url: '/api/v1/refresh' }), 422, 'VALIDATION_ERROR');
    assert.equal(assertProblem(await refreshRequest(app, 'garbage'), 401, 'TOKEN_INVALID').error, 'invalid_grant');
    assertProblem(
      await app.inject({ method: 'POST', url: '/api/v1/refresh', payload: { refresh_token: 42 } }),
      400,
      'MALFORMED_REQUEST',
    );
  });

  test('an expired refresh token answers 401 TOKEN_EXPIRED', async () => {
    const first = await login(app, account);
    clock.advance((7 * 86_400 + 10) * 1000);
    const res = await refreshRequest(app, first.refresh_token);
    const body = assertProblem(res, 401, 'TOKEN_EXPIRED');
    assert.equal(body.error, 'invalid_grant');
    assert.match(String(res.headers['www-authenticate']), /^Bearer error="invalid_token"/);
  });

  test('a disabled account cannot refresh', async () => {
    const other = await createAccount(app);
    const tokens = await login(app, other);
    await app.gatehouse.db.updateTable('users').set({ is_active: false }).where('id', '=', other.id).execute();
    assertProblem(await refreshRequest(app, tokens.refresh_token), 403, 'ACCOUNT_DISABLED');
  });

  test('the refresh grant on the token endpoint itself rotates the same way', async () => {
    const first = await login(app, account);
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: first.refresh_token }).toString(),
    });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(sid(json<Tokens>(res).access_token), sid(first.access_token));
    const attempts = await app.gatehouse.db
      .selectFrom('login_attempts')
      .select('id')
      .where('user_id', '=', account.id)
      .where('attempted_at', '>', clock.now())
      .execute();
    assert.equal(attempts.length, 0, 'a refresh is not a login attempt');
  });
});

function cookiesSet(res: LightMyRequestResponse): string[] {
  const header = res.headers['set-cookie'];
  return header === undefined ? [] : Array.isArray(header) ? header : [String(header)];
}

/** The Set-Cookie line of one cookie (a login also sets the `gatehouse-device` cookie). */
function setCookie(res: LightMyRequestResponse, name: string): string {
  const line = cookiesSet(res).find((c) => c.startsWith(`${name}=`));
  assert.ok(line, `Set-Cookie ${name} in ${cookiesSet(res).join(' | ')}`);
  return line;
}

describe('the refresh cookie (REFRESH_TOKEN_COOKIE=true)', () => {
  for (const publicUrl of ['http://gatehouse.test', 'https://auth.example.com']) {
    test(`login sets it httpOnly, SameSite=Strict, path /api/v1/refresh${publicUrl.startsWith('https') ? ', Secure' : ''}; refresh reads and renews it; logout clears it`, async () => {
      const app = await startAuthApp(
        { REFRESH_TOKEN_COOKIE: 'true', PUBLIC_URL: publicUrl, JWT_ISSUER: 'http://gatehouse.test' },
        { database },
      );
      try {
        const account = await createAccount(app);
        const res = await app.inject({
          method: 'POST',
          url: '/api/v1/login',
          payload: { username: account.username, password: account.password },
        });
        assert.equal(res.statusCode, 200, res.body);
        const cookie = setCookie(res, 'gatehouse_refresh_token');
        const tokens = json<Tokens>(res);
        assert.ok(cookie.startsWith(`gatehouse_refresh_token=${tokens.refresh_token};`), cookie);
        assert.match(cookie, /; HttpOnly/);
        assert.match(cookie, /; SameSite=Strict/);
        assert.match(cookie, /; Path=\/api\/v1\/refresh/);
        assert.match(cookie, /; Max-Age=604800/);
        assert.equal(/; Secure/.test(cookie), publicUrl.startsWith('https:'));

        const refreshed = await app.inject({
          method: 'POST',
          url: '/api/v1/refresh',
          headers: { cookie: `other=1; gatehouse_refresh_token=${tokens.refresh_token}` },
        });
        assert.equal(refreshed.statusCode, 200, refreshed.body);
        const next = json<Tokens>(refreshed);
        assert.ok(
          setCookie(refreshed, 'gatehouse_refresh_token').startsWith(`gatehouse_refresh_token=${next.refresh_token};`),
        );

        const out = await app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(next.access_token) });
        assert.equal(out.statusCode, 204);
        assert.match(setCookie(out, 'gatehouse_refresh_token'), /^gatehouse_refresh_token=; .*Max-Age=0/);
        assert.equal(cookiesSet(out).length, 1, 'logout keeps the device cookie');
      } finally {
        await app.close();
      }
    });
  }

  test('without the option no refresh cookie is set; only the device cookie', async () => {
    const app = await startAuthApp({}, { database });
    try {
      const account = await createAccount(app);
      const res = await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: account.username, password: account.password },
      });
      assert.equal(res.statusCode, 200, res.body);
      const tokens = json<Tokens>(res);
      assert.equal(typeof tokens.access_token, 'string');
      assert.ok(tokens.access_token.length > 0);
      assert.equal(typeof tokens.refresh_token, 'string');
      assert.ok(tokens.refresh_token.length > 0);
      assert.equal(tokens.token_type, 'bearer');
      assert.deepEqual(
        cookiesSet(res).map((c) => c.split('=')[0]),
        ['gatehouse-device'],
      );
    } finally {
      await app.close();
    }
  });
});

describe('logout and sessions', () => {
  let app: FastifyInstance;
  const clock = testClock();

  before(async () => {
    app = await startAuthApp({}, { clock, database });
  });
  after(() => app.close());

  const me = (token: string) => app.inject({ url: '/api/v1/me', headers: bearer(token) });
  const sessions = (token: string) => app.inject({ url: '/api/v1/sessions', headers: bearer(token) });

  test('POST /logout answers 204 and revokes only this session: access and refresh token', async () => {
    const account = await createAccount(app);
    const a = await login(app, account);
    const b = await login(app, account);
    const out = await app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(a.access_token) });
    assert.equal(out.statusCode, 204);
    assert.equal(out.body, '');
    assertProblem(await me(a.access_token), 401, 'TOKEN_INVALID');
    assertProblem(await refreshRequest(app, a.refresh_token), 401, 'TOKEN_INVALID');
    assert.equal((await me(b.access_token)).statusCode, 200);
    const row = await app.gatehouse.db
      .selectFrom('sessions')
      .select(['revoked_at', 'revoked_reason'])
      .where('uuid', '=', sid(a.access_token))
      .executeTakeFirstOrThrow();
    assert.ok(row.revoked_at instanceof Date);
    assert.equal(row.revoked_reason, 'logout');
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'logout')
      .where('user_id', '=', account.id)
      .execute();
    assert.deepEqual(
      audit.map((r) => (r.details as Body).session_uuid),
      [sid(a.access_token)],
    );
    // Logging out again with the dead token is refused like any revoked token.
    assertProblem(
      await app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(a.access_token) }),
      401,
      'TOKEN_INVALID',
    );
  });

  test('POST /logout-all answers 204 and revokes every session of the user, and no one else’s', async () => {
    const account = await createAccount(app);
    const other = await createAccount(app);
    const mine = [await login(app, account), await login(app, account), await login(app, account)];
    const theirs = await login(app, other);
    const out = await app.inject({
      method: 'POST',
      url: '/api/v1/logout-all',
      headers: bearer(mine[1]?.access_token as string),
    });
    assert.equal(out.statusCode, 204);
    for (const tokens of mine) {
      assertProblem(await me(tokens.access_token), 401, 'TOKEN_INVALID');
      assertProblem(await refreshRequest(app, tokens.refresh_token), 401, 'TOKEN_INVALID');
    }
    assert.equal((await me(theirs.access_token)).statusCode, 200);
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'logout')
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal((audit.details as Body).sessions_revoked, 3);
  });

  test('logout without a token answers 401 UNAUTHORIZED', async () => {
    assertProblem(await app.inject({ method: 'POST', url: '/api/v1/logout' }), 401, 'UNAUTHORIZED');
    assertProblem(await app.inject({ method: 'POST', url: '/api/v1/logout-all' }), 401, 'UNAUTHORIZED');
    assertProblem(await app.inject({ url: '/api/v1/sessions' }), 401, 'UNAUTHORIZED');
  });

  test('GET /sessions lists live sessions, newest first, with the current one marked', async () => {
    const account = await createAccount(app);
    const phone = await login(app, account, { 'user-agent': 'Phone/1.0' });
    clock.advance(5_000);
    const laptop = await login(app, account, { 'user-agent': 'Laptop/2.0' });
    clock.advance(5_000);
    const gone = await login(app, account, { 'user-agent': 'Gone/3.0' });
    await app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(gone.access_token) });

    const res = await sessions(laptop.access_token);
    assert.equal(res.statusCode, 200, res.body);
    const list = json<Body[]>(res);
    assert.deepEqual(
      list.map((s) => [s.id, s.user_agent, s.current]),
      [
        [sid(laptop.access_token), 'Laptop/2.0', true],
        [sid(phone.access_token), 'Phone/1.0', false],
      ],
    );
    for (const s of list) {
      assert.deepEqual(Object.keys(s).sort(), [
        'created_at',
        'current',
        'expires_at',
        'id',
        'ip_address',
        'kind',
        'last_used_at',
        'user_agent',
      ]);
      assert.equal(s.ip_address, '127.0.0.1');
      assert.equal(s.kind, 'api');
      assert.match(String(s.created_at), /Z$/);
    }
    // A refresh shows as use.
    clock.advance(30_000);
    await refreshRequest(app, phone.refresh_token);
    const after = json<Body[]>(await sessions(laptop.access_token));
    const phoneRow = after.find((s) => s.id === sid(phone.access_token));
    assert.equal(phoneRow?.last_used_at, clock.now().toISOString());
  });

  test('DELETE /sessions/{id} revokes another of your sessions at once: 204, an audit row', async () => {
    const account = await createAccount(app);
    const keep = await login(app, account);
    const drop = await login(app, account);
    assert.equal((await me(drop.access_token)).statusCode, 200);
    const res = await app.inject({
      method: 'DELETE',
      url: `/api/v1/sessions/${sid(drop.access_token)}`,
      headers: bearer(keep.access_token),
    });
    assert.equal(res.statusCode, 204, res.body);
    assertProblem(await me(drop.access_token), 401, 'TOKEN_INVALID');
    assertProblem(await refreshRequest(app, drop.refresh_token), 401, 'TOKEN_INVALID');
    assert.equal((await me(keep.access_token)).statusCode, 200);
    const audit = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'session_revoked')
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal((audit.details as Body).session_uuid, sid(drop.access_token));
    // Gone now: a second delete is a 404.
    assertProblem(
      await app.inject({
        method: 'DELETE',
        url: `/api/v1/sessions/${sid(drop.access_token)}`,
        headers: bearer(keep.access_token),
      }),
      404,
      'NOT_FOUND',
    );
  });

  test("DELETE /sessions/{id} of someone else's, unknown or malformed session answers 404 and revokes nothing", async () => {
    const account = await createAccount(app);
    const stranger = await createAccount(app);
    const mine = await login(app, account);
    const theirs = await login(app, stranger);
    for (const id of [sid(theirs.access_token), '00000000-0000-4000-8000-000000000000', 'not-a-uuid', "1' or '1'='1"]) {
      const res = await app.inject({
        method: 'DELETE',
        url: `/api/v1/sessions/${encodeURIComponent(id)}`,
        headers: bearer(mine.access_token),
      });
      assertProblem(res, 404, 'NOT_FOUND');
    }
    assert.equal((await me(theirs.access_token)).statusCode, 200);
  });

  test('a revocation inside a transaction that rolls back leaves the sessions working', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    assert.equal((await me(tokens.access_token)).statusCode, 200);
    const services = app.gatehouse;
    await assert.rejects(
      services.db.transaction().execute(async (trx) => {
        const revoked = await revokeUserSessions(services, account.id, { reason: 'password_change' }, trx);
        assert.equal(revoked.length, 1);
        throw new Error('the rest of the change failed');
      }),
      /the rest of the change failed/,
    );
    assert.equal((await me(tokens.access_token)).statusCode, 200);
    assert.equal((await refreshRequest(app, tokens.refresh_token)).statusCode, 200);
  });

  test('DELETE /sessions/{id} of the current session works like logout', async () => {
    const account = await createAccount(app);
    const tokens = await login(app, account);
    const res = await app.inject({
      method: 'DELETE',
      url: `/api/v1/sessions/${sid(tokens.access_token)}`,
      headers: bearer(tokens.access_token),
    });
    assert.equal(res.statusCode, 204);
    assertProblem(await me(tokens.access_token), 401, 'TOKEN_INVALID');
  });
});
