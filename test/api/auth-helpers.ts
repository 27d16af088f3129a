import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import type { BuildAppOptions } from '../../src/app.ts';
import { type DatabaseHandle, openDatabase } from '../../src/db/index.ts';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';

export type Body = Record<string, unknown>;

/** startApp with Redis keys of its own, so that runs sharing the machine's Redis do not meet. */
export function startAuthApp(
  env: Record<string, string | undefined> = {},
  options: BuildAppOptions = {},
): Promise<FastifyInstance> {
  return startApp({ REDIS_KEY_PREFIX: `t:${uniqueName('auth')}:`, ...env }, options);
}

export interface TestAccount {
  id: number;
  uuid: string;
  email: string;
  username: string;
  password: string;
}

/**
 * One database for the app instances of a test file: instances start faster
 * and see each other's rows, as instances sharing one PostgreSQL do.
 */
export function testDatabase(): Promise<DatabaseHandle> {
  return openDatabase(process.env.DATABASE_URL ?? 'memory://', './data');
}

/** Registers through the API, then marks the email verified with SQL (verification is another flow's job). */
export async function createAccount(
  app: FastifyInstance,
  overrides: Record<string, unknown> = {},
  options: { verified?: boolean } = {},
): Promise<TestAccount> {
  const user = newUser(overrides);
  const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
  assert.equal(res.statusCode, 201, res.body);
  const body = json(res);
  if (options.verified !== false) {
    await app.gatehouse.db
      .updateTable('users')
      .set({ email_verified_at: new Date() })
      .where('id', '=', Number(body.id))
      .execute();
  }
  return {
    id: Number(body.id),
    uuid: String(body.uuid),
    email: String(body.email),
    username: String(body.username),
    password: String(user.password),
  };
}

export interface Tokens {
  access_token: string;
  refresh_token: string;
  token_type: string;
  expires_in: number;
  refresh_expires_in: number;
}

export function loginRequest(
  app: FastifyInstance,
  username: string,
  password: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: '/api/v1/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    payload: new URLSearchParams({ grant_type: 'password', username, password }).toString(),
  });
}

export async function login(
  app: FastifyInstance,
  account: TestAccount,
  headers: Record<string, string> = {},
): Promise<Tokens> {
  const res = await loginRequest(app, account.username, account.password, headers);
  assert.equal(res.statusCode, 200, res.body);
  return json<Tokens>(res);
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export function refreshRequest(app: FastifyInstance, refreshToken: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/api/v1/refresh', payload: { refresh_token: refreshToken } });
}
