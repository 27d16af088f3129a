import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { json, newUser } from '../helpers.ts';

export type Body = Record<string, unknown>;

export interface SignedIn {
  id: number;
  uuid: string;
  email: string;
  username: string;
  password: string;
  token: string;
}

/** A signed-in user and the body their registration answered with. */
export type SignedUp = SignedIn & { body: Body };

/** Registers over HTTP, marks the address verified (the mail flow has its own tests), logs in over HTTP. */
export async function signUp(app: FastifyInstance, overrides: Body = {}): Promise<SignedUp> {
  const user = newUser(overrides);
  const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
  assert.equal(res.statusCode, 201, res.body);
  const body = json(res);
  await app.gatehouse.db
    .updateTable('users')
    .set({ email_verified_at: new Date() })
    .where('uuid', '=', String(body.uuid))
    .execute();
  return { ...(await logIn(app, String(body.email), String(user.password))), body };
}

export async function logIn(app: FastifyInstance, email: string, password: string): Promise<SignedIn> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/login', payload: { username: email, password } });
  assert.equal(res.statusCode, 200, res.body);
  const user = await app.gatehouse.db
    .selectFrom('users')
    .select(['id', 'uuid', 'email', 'username'])
    .where('email', '=', email)
    .executeTakeFirstOrThrow();
  return { ...user, password, token: String(json(res).access_token) };
}

/** A JSON request, signed in when `token` is given. */
export function call(
  app: FastifyInstance,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  token?: string,
  payload?: unknown,
): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (payload !== undefined) headers['content-type'] = 'application/json';
  return app.inject({
    method,
    url,
    headers,
    ...(payload !== undefined && { payload: JSON.stringify(payload) }),
  });
}

/** Fixture shortcut: put a user in an organization with a role, without the invitation flow. */
export async function addMember(app: FastifyInstance, organizationUuid: string, userId: number, role: string) {
  const db = app.gatehouse.db;
  const org = await db
    .selectFrom('organizations')
    .select('id')
    .where('uuid', '=', organizationUuid)
    .executeTakeFirstOrThrow();
  const roleRow = await db
    .selectFrom('roles')
    .select('id')
    .where('organization_id', '=', org.id)
    .where('name', '=', role)
    .executeTakeFirstOrThrow();
  await db
    .insertInto('memberships')
    .values({ user_id: userId, organization_id: org.id, role_id: roleRow.id })
    .execute();
}

export async function createOrganization(app: FastifyInstance, token: string, name: string): Promise<Body> {
  const res = await call(app, 'POST', '/api/v1/organizations', token, { name });
  assert.equal(res.statusCode, 201, res.body);
  return json(res);
}

/** The audit rows of an organization with one action, oldest first. */
export async function auditRows(app: FastifyInstance, organizationUuid: string, action: string) {
  return app.gatehouse.db
    .selectFrom('audit_logs')
    .selectAll()
    .where('action', '=', action)
    .where(
      'organization_id',
      '=',
      app.gatehouse.db.selectFrom('organizations').select('id').where('uuid', '=', organizationUuid),
    )
    .orderBy('id')
    .execute();
}
