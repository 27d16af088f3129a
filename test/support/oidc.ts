import type { FastifyInstance } from 'fastify';
import * as client from 'openid-client';
import type { BuildAppOptions } from '../../src/app.ts';
import { createClient } from '../../src/flows/oauth-clients.ts';
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

/** Registers a client through the registry (`createClient`, what the admin API and the CLI call). */
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
  const registered = await createClient(
    app.gatehouse,
    {
      client_name: 'Test product',
      redirect_uris: ['http://127.0.0.1:9/callback'],
      post_logout_redirect_uris: ['http://127.0.0.1:9/signed-out'],
      ...metadata,
    },
    { ip: null, userAgent: 'test' },
    null,
  );
  return {
    client_id: registered.client_id,
    ...(registered.client_secret ? { client_secret: registered.client_secret } : {}),
    redirect_uris: registered.redirect_uris,
    post_logout_redirect_uris: registered.post_logout_redirect_uris,
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
