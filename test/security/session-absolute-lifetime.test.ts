/**
 * The attack: sessions slid forever. Each refresh set a new expiry
 * REFRESH_TOKEN_EXPIRE_DAYS ahead, so a stolen refresh token, refreshed now
 * and then, kept its session alive for good. Now a session ends
 * SESSION_MAX_AGE_DAYS after its login however often it is refreshed: no
 * refresh token, `refresh_expires_in` or session cookie outlives that, and a
 * refresh after it answers like an expired session (401 TOKEN_EXPIRED).
 * Time is moved with the test clock.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import {
  createAccount,
  login,
  refreshRequest,
  startAuthApp,
  type TestAccount,
  type Tokens,
} from '../api/auth-helpers.ts';
import { json } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { openForm, setCookies } from '../support/page-form.ts';
import { assertProblem } from '../support/problem.ts';

const DAY_MS = 24 * 3600 * 1000;
const MAX_AGE_DAYS = 10;

describe('session absolute lifetime', () => {
  const clock = testClock();
  let app: FastifyInstance;
  let account: TestAccount;

  before(async () => {
    app = await startAuthApp(
      {
        SESSION_MAX_AGE_DAYS: String(MAX_AGE_DAYS),
        REFRESH_TOKEN_EXPIRE_DAYS: '7',
        RATE_LIMIT_REFRESH: '100000/1m',
        REFRESH_REUSE_INTERVAL_SECONDS: '0',
      },
      { clock },
    );
    account = await createAccount(app);
  });
  after(() => app.close());

  const refresh = async (token: string): Promise<Tokens> => {
    const res = await refreshRequest(app, token);
    assert.equal(res.statusCode, 200, res.body);
    return json<Tokens>(res);
  };

  test('a session refreshed every few days still ends SESSION_MAX_AGE_DAYS after its login, with 401 TOKEN_EXPIRED', async () => {
    const loggedInAt = clock.now().getTime();
    const end = loggedInAt + MAX_AGE_DAYS * DAY_MS;
    let tokens = await login(app, account);
    assert.equal(tokens.refresh_expires_in, 7 * 24 * 3600, 'the first token lives REFRESH_TOKEN_EXPIRE_DAYS');
    for (const day of [3, 6, 9]) {
      clock.set(new Date(loggedInAt + day * DAY_MS));
      tokens = await refresh(tokens.refresh_token);
      const expected = Math.floor((Math.min(clock.now().getTime() + 7 * DAY_MS, end) - clock.now().getTime()) / 1000);
      assert.equal(tokens.refresh_expires_in, expected, `refresh_expires_in on day ${day}`);
      assert.ok(Number(decodeJwt(tokens.refresh_token).exp) * 1000 <= end, 'the refresh token expires by the cap');
    }
    const session = await app.gatehouse.db
      .selectFrom('sessions')
      .select('expires_at')
      .where('uuid', '=', String(decodeJwt(tokens.refresh_token).sid))
      .executeTakeFirstOrThrow();
    assert.equal(session.expires_at.getTime(), end, 'the stored expiry is the cap');

    clock.set(new Date(end + 60_000));
    const late = assertProblem(await refreshRequest(app, tokens.refresh_token), 401, 'TOKEN_EXPIRED');

    // The same answer as a session that simply ran out.
    clock.set(new Date(loggedInAt));
    const idle = await login(app, account);
    clock.set(new Date(loggedInAt + 8 * DAY_MS));
    const expired = assertProblem(await refreshRequest(app, idle.refresh_token), 401, 'TOKEN_EXPIRED');
    assert.equal(late.code, expired.code);
  });

  test('a session begun before the cap was lowered (its expiry past the cap) cannot be refreshed past it', async () => {
    const start = clock.now().getTime();
    const tokens = await login(app, account);
    const sid = String(decodeJwt(tokens.refresh_token).sid);
    // As an older version wrote it: logged in 12 days ago, refreshed yesterday, expiring in 6 days.
    await app.gatehouse.db
      .updateTable('sessions')
      .set({ created_at: new Date(start - 12 * DAY_MS), expires_at: new Date(start + 6 * DAY_MS) })
      .where('uuid', '=', sid)
      .execute();
    assertProblem(await refreshRequest(app, tokens.refresh_token), 401, 'TOKEN_EXPIRED');
  });

  test('the page session cookie never outlives the cap', async () => {
    const short = await startAuthApp({ SESSION_MAX_AGE_DAYS: '1', REFRESH_TOKEN_EXPIRE_DAYS: '7' }, { clock });
    try {
      const user = await createAccount(short);
      const form = await openForm(short, '/login');
      const res = await form.post({ username: user.username, password: user.password });
      assert.equal(res.statusCode, 303, res.body);
      const cookie = setCookies(res).find((c) => c.startsWith('gatehouse-session='));
      assert.ok(cookie, 'a session cookie is set');
      assert.match(cookie, /Max-Age=86400(;|$)/);
      const value = String(/^gatehouse-session=([^;]+)/.exec(cookie)?.[1]);
      const refreshed = await refreshRequest(short, value);
      assert.equal(refreshed.statusCode, 200, refreshed.body);
      assert.ok(json<Tokens>(refreshed).refresh_expires_in <= 86400, 'nor does a refresh of the page session');
    } finally {
      await short.close();
    }
  });
});
