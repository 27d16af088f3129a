import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import * as client from 'openid-client';
import type { BuildAppOptions } from '../../src/app.ts';
import { sha256Hex } from '../../src/infra/sha256.ts';
import { createAccount } from '../api/auth-helpers.ts';
import { startApp, uniqueName } from '../helpers.ts';
import { freePort } from './ports.ts';

/** Gatehouse with OIDC_PROVIDER=true, listening on a loopback port: PUBLIC_URL is where it listens. */
export async function startProvider(
  env: Record<string, string | undefined> = {},
  options: BuildAppOptions = {},
  port?: number,
): Promise<{ app: FastifyInstance; issuer: string }> {
  const chosen = port ?? (await freePort());
  const issuer = `http://127.0.0.1:${chosen}`;
  const app = await startApp(
    { OIDC_PROVIDER: 'true', PUBLIC_URL: issuer, REDIS_KEY_PREFIX: `t:${uniqueName('oidc')}:`, ...env },
    options,
  );
  await app.listen({ host: '127.0.0.1', port: chosen });
  return { app, issuer };
}

export interface RegisteredClient {
  client_id: string;
  client_secret?: string;
  redirect_uris: string[];
  post_logout_redirect_uris: string[];
}

/**
 * Registers a client the way the registry stores one (secret as SHA-256, shown
 * once); the registry's own API and CLI are tested on their own.
 */
export async function registerClient(
  app: FastifyInstance,
  metadata: {
    client_name?: string;
    redirect_uris?: string[];
    post_logout_redirect_uris?: string[];
    token_endpoint_auth_method?: 'none' | 'client_secret_basic' | 'client_secret_post';
    grant_types?: string[];
    scope?: string;
    first_party?: boolean;
  } = {},
): Promise<RegisteredClient> {
  const clientId = randomBytes(16).toString('base64url');
  const method = metadata.token_endpoint_auth_method ?? 'client_secret_basic';
  const secret = method === 'none' ? undefined : randomBytes(32).toString('base64url');
  const redirectUris = metadata.redirect_uris ?? ['http://127.0.0.1:9/callback'];
  const postLogout = metadata.post_logout_redirect_uris ?? ['http://127.0.0.1:9/signed-out'];
  await app.gatehouse.db
    .insertInto('oauth_clients')
    .values({
      client_id: clientId,
      client_secret_hash: secret ? sha256Hex(secret) : null,
      client_name: metadata.client_name ?? 'Test product',
      redirect_uris: JSON.stringify(redirectUris),
      post_logout_redirect_uris: JSON.stringify(postLogout),
      token_endpoint_auth_method: method,
      grant_types: JSON.stringify(metadata.grant_types ?? ['authorization_code', 'refresh_token']),
      scope: metadata.scope ?? 'openid profile email offline_access organizations',
      first_party: metadata.first_party ?? false,
    })
    .execute();
  return {
    client_id: clientId,
    ...(secret ? { client_secret: secret } : {}),
    redirect_uris: redirectUris,
    post_logout_redirect_uris: postLogout,
  };
}

/** openid-client's configuration for a client of `issuer` (loopback http allowed: tests only). */
export async function relyingParty(issuer: string, registered: RegisteredClient): Promise<client.Configuration> {
  const config = await client.discovery(
    new URL(issuer),
    registered.client_id,
    registered.client_secret ? { client_secret: registered.client_secret } : { token_endpoint_auth_method: 'none' },
    registered.client_secret ? client.ClientSecretBasic(registered.client_secret) : client.None(),
    { execute: [client.allowInsecureRequests] },
  );
  // Verify the ID token's signature against the JWKS, not only its claims.
  client.enableNonRepudiationChecks(config);
  return config;
}

/** What a relying party keeps between sending the browser away and its return. */
export interface PendingAuthorization {
  url: URL;
  verifier: string;
  state: string;
  nonce: string;
}

export async function authorizationRequest(
  config: client.Configuration,
  parameters: Record<string, string>,
): Promise<PendingAuthorization> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    scope: 'openid',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...parameters,
  });
  return { url, verifier, state, nonce };
}

export { formIn, HttpBrowser, signInOnPage } from './http-browser.ts';
export { createAccount };
