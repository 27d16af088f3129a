import assert from 'node:assert/strict';
import type { FastifyInstance } from 'fastify';
import { json } from '../helpers.ts';
import { bearer, postJson } from './mfa.ts';
import { SoftAuthenticator } from './webauthn-authenticator.ts';

type Body = Record<string, unknown>;
type CreationOptions = { challenge: string; rp: { id?: string }; user: { id: string } } & Body;
export type RequestOptions = { challenge: string; challenge_id: string; allowCredentials?: { id: string }[] } & Body;

/** Creation options for a signed-in session. */
export async function registrationOptions(app: FastifyInstance, access: string): Promise<CreationOptions> {
  const res = await postJson(app, '/api/v1/passkeys/register/options', {}, bearer(access));
  assert.equal(res.statusCode, 200, res.body);
  return json<CreationOptions>(res);
}

/** Adds a passkey held by `authenticator` (a new one by default) to the account the token signs in. */
export async function addPasskey(
  app: FastifyInstance,
  access: string,
  authenticator = new SoftAuthenticator(),
  name = 'Laptop',
): Promise<{ authenticator: SoftAuthenticator; passkey: { id: string; name: string; created_at: string } }> {
  const options = await registrationOptions(app, access);
  const res = await postJson(
    app,
    '/api/v1/passkeys/register/verify',
    { response: authenticator.register(options), name },
    bearer(access),
  );
  assert.equal(res.statusCode, 201, res.body);
  return { authenticator, passkey: json(res) };
}

export async function loginOptions(app: FastifyInstance, body: Body = {}): Promise<RequestOptions> {
  const res = await postJson(app, '/api/v1/login/passkey/options', body);
  assert.equal(res.statusCode, 200, res.body);
  return json<RequestOptions>(res);
}

export function loginVerify(app: FastifyInstance, challengeId: string, response: unknown) {
  return postJson(app, '/api/v1/login/passkey/verify', { challenge_id: challengeId, response });
}
