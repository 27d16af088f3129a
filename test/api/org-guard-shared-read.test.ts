import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { decodeJwt } from 'jose';
import type { KyselyPlugin } from 'kysely';
import pg from 'pg';
import { buildApp } from '../../src/app.ts';
import { authorizeSessionMember } from '../../src/flows/org-access.ts';
import { requireOrgRole } from '../../src/plugin.ts';
import { json, reachable, requireService, testConfig, uniqueName } from '../helpers.ts';
import { assertProblem } from '../support/problem.ts';
import { addMember, call, createOrganization, type SignedIn, signUp } from './org-helpers.ts';

const LOCAL_POSTGRES = 'postgres://postgres@127.0.0.1:5432';

/** An instance with a host route behind `requireOrgRole('user')` that does no work of its own. */
async function startGuardedApp(databaseUrl: string): Promise<FastifyInstance> {
  const app = await buildApp(testConfig({ DATABASE_URL: databaseUrl }));
  app.get('/orgs/:uuid/ping', { onRequest: requireOrgRole('user') }, async (request) => ({
    role: request.membership.role,
    user: request.auth.userUuid,
    organization: request.membership.organizationUuid,
  }));
  await app.ready();
  return app;
}

const ping = (app: FastifyInstance, organizationUuid: string, token: string) =>
  call(app, 'GET', `/orgs/${organizationUuid}/ping`, token);

/** Counts the statements a Kysely instance runs. */
function statementCounter(): { plugin: KyselyPlugin; count: () => number } {
  let statements = 0;
  return {
    plugin: {
      transformQuery: (args) => args.node,
      transformResult: async (args) => {
        statements += 1;
        return args.result;
      },
    },
    count: () => statements,
  };
}

/**
 * Two app instances on one PostgreSQL: with DATABASE_URL that is it; on the
 * embedded default a throwaway database on the local PostgreSQL stands in.
 */
describe('the organization guard reads membership with a statement concurrent checks share', () => {
  let databaseUrl: string | undefined;
  let throwaway: string | undefined;
  let skip: string | false = false;
  let a: FastifyInstance;
  let b: FastifyInstance;

  before(async () => {
    if (process.env.DATABASE_URL) {
      databaseUrl = process.env.DATABASE_URL;
    } else {
      skip = requireService('PostgreSQL at 127.0.0.1:5432', await reachable('127.0.0.1', 5432));
      if (skip) return;
      throwaway = `gatehouse_test_${uniqueName('orgguard').toLowerCase()}`;
      const admin = new pg.Client({ connectionString: `${LOCAL_POSTGRES}/postgres` });
      await admin.connect();
      await admin.query(`create database ${throwaway}`);
      await admin.end();
      databaseUrl = `${LOCAL_POSTGRES}/${throwaway}`;
    }
    a = await startGuardedApp(databaseUrl);
    b = await startGuardedApp(databaseUrl);
  });

  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    if (!throwaway) return;
    const admin = new pg.Client({ connectionString: `${LOCAL_POSTGRES}/postgres` });
    await admin.connect();
    await admin.query(`drop database if exists ${throwaway} with (force)`);
    await admin.end();
  });

  test('concurrent checks for different users and organizations each get their own answer', async (t) => {
    if (skip) return t.skip(skip);
    const owners = [await signUp(b), await signUp(b), await signUp(b)];
    const orgs = await Promise.all(
      owners.map(async (owner) => String((await createOrganization(b, owner.token, `Team ${uniqueName()}`)).uuid)),
    );
    const people: SignedIn[] = [];
    for (let i = 0; i < 6; i++) people.push(await signUp(b));
    /** What each (person, organization) pair answers: the role admitted, or the refusal. */
    const expected = new Map<string, { status: number; role?: string; code?: string }>();
    const expect = (person: SignedIn, org: string, outcome: { status: number; role?: string; code?: string }) =>
      expected.set(`${person.uuid} ${org}`, outcome);
    for (const [i, org] of orgs.entries()) {
      for (const [j, owner] of owners.entries()) {
        expect(owner, org, i === j ? { status: 200, role: 'admin' } : { status: 404, code: 'NOT_FOUND' });
      }
      // Each organization gives each person a different standing.
      for (const [j, person] of people.entries()) {
        const standing = (i + j) % 5;
        if (standing === 0) {
          await addMember(b, org, person.id, 'user');
          expect(person, org, { status: 200, role: 'user' });
        } else if (standing === 1) {
          await addMember(b, org, person.id, 'viewer');
          expect(person, org, { status: 403, code: 'FORBIDDEN' });
        } else if (standing === 2) {
          // Demoted on the other instance before the burst.
          await addMember(b, org, person.id, 'user');
          const res = await call(b, 'PATCH', `/api/v1/organizations/${org}/members/${person.uuid}`, owners[i]?.token, {
            role: 'viewer',
          });
          assert.equal(res.statusCode, 200, res.body);
          expect(person, org, { status: 403, code: 'FORBIDDEN' });
        } else if (standing === 3) {
          // Removed on the other instance before the burst.
          await addMember(b, org, person.id, 'admin');
          const res = await call(b, 'DELETE', `/api/v1/organizations/${org}/members/${person.uuid}`, owners[i]?.token);
          assert.equal(res.statusCode, 204, res.body);
          expect(person, org, { status: 404, code: 'NOT_FOUND' });
        } else {
          expect(person, org, { status: 404, code: 'NOT_FOUND' });
        }
      }
    }
    const everyone = [...owners, ...people];
    const pairs = everyone.flatMap((person) => orgs.map((org) => ({ person, org })));
    // Every pair three times over, interleaved, all in flight at once on the instance that made no change.
    const burst = [...pairs, ...pairs.toReversed(), ...pairs];
    const answers = await Promise.all(burst.map(({ person, org }) => ping(a, org, person.token)));
    assert.ok(new Set(burst.map((p) => expected.get(`${p.person.uuid} ${p.org}`)?.status)).size === 3);
    for (const [i, { person, org }] of burst.entries()) {
      const want = expected.get(`${person.uuid} ${org}`);
      const res = answers[i];
      assert.ok(want && res);
      if (want.status === 200) {
        assert.equal(res.statusCode, 200, res.body);
        assert.deepEqual(json(res), { role: want.role, user: person.uuid, organization: org });
      } else {
        assertProblem(res, want.status, want.code as string);
      }
    }
  });

  test('a member demoted or removed on one instance is refused by the very next request on the other', async (t) => {
    if (skip) return t.skip(skip);
    const owner = await signUp(a);
    const member = await signUp(a);
    const org = String((await createOrganization(a, owner.token, `Team ${uniqueName()}`)).uuid);
    await addMember(a, org, member.id, 'user');
    const memberUrl = `/api/v1/organizations/${org}/members/${member.uuid}`;

    assert.equal((await ping(a, org, member.token)).statusCode, 200);
    assert.equal((await call(b, 'PATCH', memberUrl, owner.token, { role: 'viewer' })).statusCode, 200);
    assertProblem(await ping(a, org, member.token), 403, 'FORBIDDEN');
    assert.equal((await call(b, 'PATCH', memberUrl, owner.token, { role: 'admin' })).statusCode, 200);
    assert.equal(json(await ping(a, org, member.token)).role, 'admin');
    assert.equal((await call(b, 'DELETE', memberUrl, owner.token)).statusCode, 204);
    assertProblem(await ping(a, org, member.token), 404, 'NOT_FOUND');

    // The organization's own routes share the guard: the removed member reads nothing there either.
    assertProblem(await call(a, 'GET', `/api/v1/organizations/${org}`, member.token), 404, 'NOT_FOUND');
    assert.equal((await call(a, 'GET', `/api/v1/organizations/${org}`, owner.token)).statusCode, 200);
  });

  test('a session revoked on one instance is refused by the next guarded request on the other', async (t) => {
    if (skip) return t.skip(skip);
    const owner = await signUp(a);
    const org = String((await createOrganization(a, owner.token, `Team ${uniqueName()}`)).uuid);
    assert.equal((await ping(a, org, owner.token)).statusCode, 200);
    const out = await call(b, 'POST', '/api/v1/logout', owner.token);
    assert.equal(out.statusCode, 204, out.body);
    assertProblem(await ping(a, org, owner.token), 401, 'TOKEN_INVALID');
    // A malformed organization uuid still checks the session first.
    assertProblem(await ping(a, 'not-a-uuid', owner.token), 401, 'TOKEN_INVALID');
    const other = await signUp(a);
    assertProblem(await ping(a, 'not-a-uuid', other.token), 404, 'NOT_FOUND');
    assertProblem(await call(a, 'GET', `/orgs/${org}/ping`), 401, 'UNAUTHORIZED');
  });

  test('concurrent checks run as one statement, and a check after it runs another', async (t) => {
    if (skip) return t.skip(skip);
    const owner = await signUp(a);
    const outsider = await signUp(a);
    const orgs: string[] = [];
    for (let i = 0; i < 5; i++) {
      orgs.push(String((await createOrganization(a, owner.token, `Team ${uniqueName()}`)).uuid));
    }
    const session = (user: SignedIn) => ({
      sessionUuid: String(decodeJwt(user.token).sid),
      userUuid: user.uuid,
    });
    const counter = statementCounter();
    const db = a.gatehouse.db.withPlugin(counter.plugin);
    const checks = [owner, outsider].flatMap((user) =>
      orgs.map((org) =>
        authorizeSessionMember(db, session(user), org, { role: 'user' }).then(
          (caller) => caller.access.role,
          (error: { code?: string }) => error.code,
        ),
      ),
    );
    const outcomes = await Promise.all(checks);
    assert.deepEqual(outcomes, [...orgs.map(() => 'admin'), ...orgs.map(() => 'NOT_FOUND')]);
    assert.equal(counter.count(), 1, 'ten concurrent checks, one statement');

    // A check asked for after that read ended reads again: nothing is kept between requests.
    const again = await authorizeSessionMember(db, session(owner), orgs[0] as string, { role: 'user' });
    assert.equal(again.access.role, 'admin');
    assert.equal(counter.count(), 2);
  });
});
