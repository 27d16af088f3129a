/**
 * The attack: racing the refresh-token rotation. A thief who copied a
 * refresh token presents it at the same moment as its owner, many times at
 * once, through two instances, or while the owner logs out, hoping to come
 * away with a second live line of tokens (a fork of the session) or to keep
 * one after the session was revoked. Gatehouse rotates with one conditional
 * UPDATE (the token must still be the current one) and settles every other
 * case under the session's row lock (src/flows/refresh.ts): of any number of
 * concurrent refreshes one rotates and the others, inside
 * REFRESH_REUSE_INTERVAL_SECONDS, receive that same successor; a spent token
 * presented after the interval revokes the whole session (401
 * REFRESH_TOKEN_REUSED, one audit row), and no token handed out in the race
 * outlives the revocation. The invariant checked after every race: at most
 * one refresh token of the session is live, and it is one that was issued.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import type { DatabaseHandle } from '../../src/db/index.ts';
import { sha256Hex } from '../../src/infra/sha256.ts';
import {
  bearer,
  createAccount,
  login,
  refreshRequest,
  startAuthApp,
  type TestAccount,
  type Tokens,
  testDatabase,
} from '../api/auth-helpers.ts';
import { json } from '../helpers.ts';
import { testClock } from '../support/clock.ts';

const RACERS = 16;
const REUSE_INTERVAL_MS = 10_000;

const sid = (token: string) => String(decodeJwt(token).sid);
const jtiHash = (token: string) => sha256Hex(String(decodeJwt(token).jti));

let database: DatabaseHandle;
before(async () => {
  database = await testDatabase();
});
after(() => database.close());

describe('refresh-token races', () => {
  const clock = testClock();
  let app: FastifyInstance;
  /** A second instance on the same database, as behind a load balancer. */
  let twin: FastifyInstance;
  let account: TestAccount;

  before(async () => {
    app = await startAuthApp({ RATE_LIMIT_REFRESH: '100000/1h' }, { clock, database });
    twin = await startAuthApp({ RATE_LIMIT_REFRESH: '100000/1h' }, { clock, database });
    account = await createAccount(app);
  });
  after(async () => {
    await twin.close();
    await app.close();
  });

  const session = (uuid: string) =>
    app.gatehouse.db.selectFrom('sessions').selectAll().where('uuid', '=', uuid).executeTakeFirstOrThrow();
  const me = (token: string) => app.inject({ url: '/api/v1/me', headers: bearer(token) });

  /** The pairs handed out by the successful answers. */
  const issued = (answers: LightMyRequestResponse[]) =>
    answers.filter((r) => r.statusCode === 200).map((r) => json<Tokens>(r));

  /**
   * After the race: the refresh tokens that still work are at most one, it is
   * among those issued, and a revoked session has none.
   */
  async function assertNoFork(sessionUuid: string, tokens: Tokens[]) {
    const row = await session(sessionUuid);
    const live = new Set(
      tokens.filter((t) => row.revoked_at === null && jtiHash(t.refresh_token) === row.refresh_token_hash),
    );
    const distinct = new Set([...live].map((t) => t.refresh_token));
    assert.ok(distinct.size <= 1, `${distinct.size} live refresh tokens: a fork`);
    if (row.revoked_at === null) {
      assert.equal(distinct.size, 1, 'a live session has exactly one current token, one that was handed out');
    }
    return row;
  }

  const auditCount = async (action: string, sessionUuid: string) =>
    (
      await app.gatehouse.db
        .selectFrom('audit_logs')
        .select('details')
        .where('action', '=', action)
        .where('user_id', '=', account.id)
        .execute()
    ).filter((a) => (a.details as Record<string, unknown>).session_uuid === sessionUuid).length;

  test(`${RACERS} concurrent refreshes of one token, through two instances: one rotation, every winner holds the same successor`, async () => {
    const first = await login(app, account);
    const answers = await Promise.all(
      Array.from({ length: RACERS }, (_, i) => refreshRequest(i % 2 ? twin : app, first.refresh_token)),
    );
    for (const res of answers) assert.equal(res.statusCode, 200, res.body);
    const pairs = issued(answers);
    assert.equal(new Set(pairs.map((p) => p.refresh_token)).size, 1, 'one successor, not a fork');
    const row = await assertNoFork(sid(first.access_token), pairs);
    assert.equal(row.generation, 1, 'rotated once');
    assert.equal(row.revoked_at, null);
    assert.equal(await auditCount('token_refresh', row.uuid), 1, 'one token_refresh audit row');
  });

  test('the thief replays the token after the reuse interval, many times at once: exactly one REFRESH_TOKEN_REUSED, the family is revoked', async () => {
    const first = await login(app, account);
    const owner = json<Tokens>(await refreshRequest(app, first.refresh_token));
    clock.advance(REUSE_INTERVAL_MS + 1_000);
    const answers = await Promise.all(
      Array.from({ length: RACERS }, (_, i) => refreshRequest(i % 2 ? twin : app, first.refresh_token)),
    );
    const codes = answers.map((r) => {
      assert.equal(r.statusCode, 401, r.body);
      return String(json(r).code);
    });
    assert.equal(codes.filter((c) => c === 'REFRESH_TOKEN_REUSED').length, 1, codes.join());
    assert.deepEqual(new Set(codes.filter((c) => c !== 'REFRESH_TOKEN_REUSED')), new Set(['TOKEN_INVALID']));
    const row = await assertNoFork(sid(first.access_token), [owner]);
    assert.equal(row.revoked_reason, 'refresh_token_reuse');
    assert.equal(await auditCount('refresh_token_reuse', row.uuid), 1);
    // Nothing of the family works any more: the owner's current pair, on either instance.
    assert.equal((await refreshRequest(twin, owner.refresh_token)).statusCode, 401);
    assert.equal((await me(owner.access_token)).statusCode, 401);
  });

  test('owner and thief race, the thief with a token spent beyond the interval: whoever wins, no token issued in the race survives', async () => {
    const first = await login(app, account);
    const current = json<Tokens>(await refreshRequest(app, first.refresh_token));
    clock.advance(REUSE_INTERVAL_MS + 1_000);
    // The owner refreshes the current token while the thief replays the spent one, interleaved.
    const answers = await Promise.all(
      Array.from({ length: RACERS }, (_, i) =>
        i % 2 ? refreshRequest(twin, first.refresh_token) : refreshRequest(app, current.refresh_token),
      ),
    );
    assert.ok(
      answers.some((r) => r.statusCode === 401 && json(r).code === 'REFRESH_TOKEN_REUSED'),
      'the replay was caught',
    );
    const row = await assertNoFork(sid(first.access_token), [current, ...issued(answers)]);
    assert.ok(row.revoked_at instanceof Date, 'the family is revoked');
    for (const pair of [current, ...issued(answers)]) {
      assert.equal((await me(pair.access_token)).statusCode, 401, 'an access token from the race is refused');
      assert.equal((await refreshRequest(app, pair.refresh_token)).statusCode, 401);
    }
  });

  test('refreshes racing a logout: once logout answers, nothing handed out in the race works', async () => {
    const tokens = await login(app, account);
    const logout = app.inject({ method: 'POST', url: '/api/v1/logout', headers: bearer(tokens.access_token) });
    const answers = await Promise.all([
      ...Array.from({ length: RACERS / 2 }, (_, i) => refreshRequest(i % 2 ? twin : app, tokens.refresh_token)),
      logout,
      ...Array.from({ length: RACERS / 2 }, (_, i) => refreshRequest(i % 2 ? twin : app, tokens.refresh_token)),
    ]);
    assert.equal(answers[RACERS / 2]?.statusCode, 204, 'logout');
    const refreshes = answers.filter((_, i) => i !== RACERS / 2);
    for (const res of refreshes) assert.ok([200, 401].includes(res.statusCode), res.body);
    const row = await assertNoFork(sid(tokens.access_token), issued(refreshes));
    assert.ok(row.revoked_at instanceof Date);
    for (const pair of [tokens, ...issued(refreshes)]) {
      assert.equal((await me(pair.access_token)).statusCode, 401);
      assert.equal((await refreshRequest(twin, pair.refresh_token)).statusCode, 401);
    }
  });

  test('two generations raced at once (a slow tab holds the older token): never two live lines', async () => {
    const first = await login(app, account);
    const second = json<Tokens>(await refreshRequest(app, first.refresh_token));
    // Inside the interval: the older token is still honoured with the current successor, until the next rotation.
    const answers = await Promise.all(
      Array.from({ length: RACERS }, (_, i) =>
        refreshRequest(i % 2 ? twin : app, i % 4 < 2 ? first.refresh_token : second.refresh_token),
      ),
    );
    for (const res of answers) assert.ok([200, 401].includes(res.statusCode), res.body);
    const row = await assertNoFork(sid(first.access_token), [second, ...issued(answers)]);
    if (row.revoked_at === null) {
      // Every answer that issued a pair issued the session's current one or its predecessor's successor.
      const live = issued(answers).filter((p) => jtiHash(p.refresh_token) === row.refresh_token_hash);
      assert.ok(live.length >= 1);
    } else {
      assert.equal(row.revoked_reason, 'refresh_token_reuse');
      for (const pair of issued(answers)) assert.equal((await me(pair.access_token)).statusCode, 401);
    }
  });
});
