import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import type { SsoProvider } from '../config.ts';
import type { User } from '../db/schema.ts';
import { usernameFromEmail } from '../domain/account-rules.ts';
import { AppError } from '../domain/errors.ts';
import { canonicalUuid } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { publicLink, queueMail } from '../infra/mail.ts';
import { hasTotp } from '../infra/mfa.ts';
import { dummyHash } from '../infra/passwords.ts';
import type { SessionKind } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';
import { type LoggedIn, loginSource, mfaChallenge, recordLoginSuccess } from './login.ts';

/**
 * Sign-in with other identity providers (SSO_PROVIDERS): Gatehouse as a
 * relying party. OpenID Connect issuers through discovery with
 * `openid-client` (ID token signature checked against the issuer's JWKS,
 * issuer, audience, nonce, expiry); GitHub through its OAuth 2.0 endpoints
 * and REST API. State, nonce and PKCE verifier live in `sso_states`, bound
 * to the browser by an httpOnly cookie, single use.
 */

const STATE_SECONDS = 600;

export interface SsoStart {
  url: string;
  /** The value of the httpOnly cookie that binds the callback to this browser. */
  binding: string;
}

interface SsoProfile {
  subject: string;
  email: string | undefined;
  emailVerified: boolean;
  name: string | undefined;
  givenName: string | undefined;
  familyName: string | undefined;
  username: string | undefined;
}

export type SsoOutcome =
  | { kind: 'signed_in'; issued: LoggedIn; redirectTo: string | null; created: boolean }
  | { kind: 'linked'; redirectTo: string | null };

/** A provider by name, or 404. */
export function ssoProvider(services: Services, name: string): SsoProvider {
  const provider = services.config.ssoProviders.find((p) => p.name === name);
  if (!provider) throw new AppError('NOT_FOUND', { detail: `No sign-in provider is called "${name}".` });
  return provider;
}

const configurations = new WeakMap<SsoProvider, Promise<client.Configuration>>();

/** The provider's client configuration: discovered once (again after a failure), GitHub's built from its URLs. */
async function configurationOf(services: Services, provider: SsoProvider): Promise<client.Configuration> {
  let pending = configurations.get(provider);
  if (!pending) {
    pending = buildConfiguration(services, provider);
    configurations.set(provider, pending);
    pending.catch(() => configurations.delete(provider));
  }
  return pending;
}

async function buildConfiguration(services: Services, provider: SsoProvider): Promise<client.Configuration> {
  const insecure = services.config.environment !== 'production';
  const auth = provider.clientSecret ? client.ClientSecretPost(provider.clientSecret) : client.None();
  if (provider.kind === 'github') {
    const config = new client.Configuration(
      {
        issuer: provider.githubUrl,
        authorization_endpoint: `${provider.githubUrl}/login/oauth/authorize`,
        token_endpoint: `${provider.githubUrl}/login/oauth/access_token`,
      },
      provider.clientId,
      provider.clientSecret,
      auth,
    );
    if (insecure && provider.githubUrl.startsWith('http:')) client.allowInsecureRequests(config);
    return config;
  }
  try {
    const issuer = new URL(String(provider.issuer));
    const config = await client.discovery(
      issuer,
      provider.clientId,
      provider.clientSecret,
      auth,
      insecure && issuer.protocol === 'http:' ? { execute: [client.allowInsecureRequests] } : undefined,
    );
    // An ID token from the token endpoint is verified against the issuer's JWKS too, not only its claims.
    client.enableNonRepudiationChecks(config);
    return config;
  } catch (error) {
    throw unavailable(provider, error);
  }
}

function unavailable(provider: SsoProvider, cause: unknown): AppError {
  return new AppError('SSO_UNAVAILABLE', {
    detail: `${provider.label.replace(/^Continue with /, '')} could not be reached or gave an answer Gatehouse cannot read. Try again in a moment.`,
    cause,
  });
}

/**
 * `redirect_to` after the sign-in: a path of this site, or a URL of this
 * site's origin or of an origin in CORS_ORIGINS. Anything else is refused.
 */
function allowedRedirect(services: Services, value: unknown): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' || value.length > 2048) throw redirectRefused();
  if (value.startsWith('/')) {
    if (
      value.startsWith('//') ||
      value.includes('\\') ||
      /^\/%(2f|5c)/i.test(value) ||
      !/^\/[\x21-\x7e]*$/.test(value)
    ) {
      throw redirectRefused();
    }
    return value;
  }
  if (!URL.canParse(value)) throw redirectRefused();
  const url = new URL(value);
  const allowed = new Set([new URL(services.config.publicUrl).origin, ...services.config.corsOrigins]);
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || !allowed.has(url.origin)) throw redirectRefused();
  return url.href;
}

function redirectRefused(): AppError {
  return new AppError('REDIRECT_NOT_ALLOWED', {
    detail: 'redirect_to must be a path of this site or a URL of an allowed origin (PUBLIC_URL, CORS_ORIGINS).',
  });
}

/**
 * `GET /sso/{provider}/start`: the provider's authorization URL, and the
 * browser binding. A refused `redirect_to` or an unreachable provider is
 * audited (`sso_refused`) like a refused callback.
 */
export async function startSso(
  services: Services,
  provider: SsoProvider,
  input: { redirectTo: unknown; linkUserId: number | null; callbackUrl: string },
  context: RequestContext,
): Promise<SsoStart> {
  let redirectTo: string | null;
  let config: client.Configuration;
  try {
    redirectTo = allowedRedirect(services, input.redirectTo);
    config = await configurationOf(services, provider);
  } catch (thrown) {
    const error = thrown instanceof AppError ? thrown : unavailable(provider, thrown);
    const reason = error.code === 'REDIRECT_NOT_ALLOWED' ? 'redirect_not_allowed' : 'provider_unavailable:discovery';
    throw await refused(services, provider, reason, error, context, input.linkUserId);
  }
  const state = randomBytes(32).toString('base64url');
  const nonce = randomBytes(32).toString('base64url');
  const binding = randomBytes(32).toString('base64url');
  const verifier = client.randomPKCECodeVerifier();
  const now = services.clock.now();
  await services.db
    .insertInto('sso_states')
    .values({
      provider: provider.name,
      state_hash: sha256Hex(state),
      binding_hash: sha256Hex(binding),
      nonce,
      code_verifier: verifier,
      redirect_to: redirectTo,
      link_user_id: input.linkUserId,
      created_at: now,
      expires_at: new Date(now.getTime() + STATE_SECONDS * 1000),
    })
    .execute();
  const parameters: Record<string, string> = {
    redirect_uri: input.callbackUrl,
    scope: provider.scopes.join(' '),
    state,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
  };
  if (provider.kind === 'oidc') parameters.nonce = nonce;
  return { url: client.buildAuthorizationUrl(config, parameters).href, binding };
}

/** A refusal of the callback: audited (`sso_refused`, with why), then the error. */
async function refused(
  services: Services,
  provider: SsoProvider,
  reason: string,
  error: AppError,
  context: RequestContext,
  userId: number | null = null,
): Promise<AppError> {
  await recordAudit(
    services.db,
    { action: 'sso_refused', userId, details: { provider: provider.name, reason } },
    context,
  );
  return error;
}

/**
 * `GET /sso/{provider}/callback`: checks the state against this browser's
 * binding (single use), exchanges the code, validates what the provider
 * says, then signs the person in (a new account, or an identity already
 * linked, or linked now under the linking rules) or links the identity to
 * the signed-in account that asked for it.
 */
export async function finishSso(
  services: Services,
  provider: SsoProvider,
  input: { currentUrl: URL; binding: string | undefined; callbackUrl: string },
  context: RequestContext,
  options: { kind: SessionKind },
): Promise<SsoOutcome> {
  const params = input.currentUrl.searchParams;
  const state = params.get('state');
  const stateInvalid = () =>
    new AppError('SSO_STATE_INVALID', {
      detail: 'This sign-in was not started in this browser, was already used, or took too long. Start it again.',
    });
  if (!state || !input.binding) throw await refused(services, provider, 'state_missing', stateInvalid(), context);
  const now = services.clock.now();
  const row = await services.db
    .updateTable('sso_states')
    .set({ used_at: now })
    .where('state_hash', '=', sha256Hex(state))
    .where('binding_hash', '=', sha256Hex(input.binding))
    .where('provider', '=', provider.name)
    .where('used_at', 'is', null)
    .where('expires_at', '>', now)
    .returning(['nonce', 'code_verifier', 'redirect_to', 'link_user_id'])
    .executeTakeFirst();
  if (!row) throw await refused(services, provider, 'state_invalid', stateInvalid(), context);

  const providerError = params.get('error');
  if (providerError) {
    throw await refused(
      services,
      provider,
      `provider_error:${providerError.slice(0, 64)}`,
      new AppError('SSO_FAILED', { detail: 'The sign-in was cancelled or refused at the provider.' }),
      context,
    );
  }

  const profile = await fetchProfile(services, provider, input, row, context);
  const domain = profile.email?.split('@')[1]?.toLowerCase();
  if (
    provider.allowedDomains.length > 0 &&
    (!domain || !profile.emailVerified || !provider.allowedDomains.includes(domain))
  ) {
    throw await refused(
      services,
      provider,
      'domain_not_allowed',
      new AppError('SSO_DOMAIN_NOT_ALLOWED', {
        detail: `Only verified addresses of ${provider.allowedDomains.join(', ')} may sign in with this provider.`,
      }),
      context,
    );
  }
  return signInWith(services, provider, profile, row, context, options);
}

async function fetchProfile(
  services: Services,
  provider: SsoProvider,
  input: { currentUrl: URL; callbackUrl: string },
  row: { nonce: string; code_verifier: string },
  context: RequestContext,
): Promise<SsoProfile> {
  const config = await configurationOf(services, provider);
  // The provider answers on the callback URL as registered; the request may have come in through a proxy.
  const callback = new URL(input.callbackUrl);
  callback.search = input.currentUrl.search;
  let tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers;
  try {
    tokens = await client.authorizationCodeGrant(config, callback, {
      pkceCodeVerifier: row.code_verifier,
      expectedState: client.skipStateCheck,
      ...(provider.kind === 'oidc' ? { expectedNonce: row.nonce, idTokenExpected: true } : {}),
    });
  } catch (error) {
    throw await tokenFailure(services, provider, error, context);
  }
  if (provider.kind === 'github') return githubProfile(services, provider, tokens.access_token, context);
  const claims = tokens.claims();
  if (!claims || typeof claims.sub !== 'string') {
    throw await refused(
      services,
      provider,
      'no_id_token',
      new AppError('SSO_FAILED', { detail: 'The provider sent no ID token.' }),
      context,
    );
  }
  const text = (value: unknown) => (typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined);
  const email = text(claims.email)?.toLowerCase();
  return {
    subject: claims.sub,
    email,
    emailVerified: email !== undefined && claims.email_verified === true,
    name: text(claims.name),
    givenName: text(claims.given_name),
    familyName: text(claims.family_name),
    username: text(claims.preferred_username),
  };
}

/** What went wrong at the token endpoint or with the ID token: the provider's fault (502) or a refusal (401). */
async function tokenFailure(
  services: Services,
  provider: SsoProvider,
  error: unknown,
  context: RequestContext,
): Promise<AppError> {
  const code = (error as { code?: string }).code;
  const refusedByCheck =
    error instanceof client.ResponseBodyError ||
    error instanceof client.AuthorizationResponseError ||
    (typeof code === 'string' &&
      /^OAUTH_(JWT_CLAIM_COMPARISON_FAILED|JWT_TIMESTAMP_CHECK|JWS_SIGNATURE_VERIFICATION_FAILED|INVALID_RESPONSE|KEY_SELECTION_FAILED|UNSUPPORTED_OPERATION)/.test(
        code,
      ));
  const reason = refusedByCheck
    ? `token_refused:${code ?? (error as Error).name}`
    : `provider_unavailable:${code ?? 'network'}`;
  return refused(
    services,
    provider,
    reason,
    refusedByCheck
      ? new AppError('SSO_FAILED', {
          detail:
            'The provider’s answer did not check out (its token, signature, audience, issuer, nonce or expiry). Start the sign-in again.',
          cause: error,
        })
      : unavailable(provider, error),
    context,
  );
}

async function githubProfile(
  services: Services,
  provider: SsoProvider,
  accessToken: string,
  context: RequestContext,
): Promise<SsoProfile> {
  const get = async (path: string): Promise<unknown> => {
    let res: Response;
    try {
      res = await fetch(`${provider.githubApiUrl}${path}`, {
        headers: {
          authorization: `Bearer ${accessToken}`,
          accept: 'application/vnd.github+json',
          'x-github-api-version': '2022-11-28',
          'user-agent': 'gatehouse',
        },
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      throw await refused(services, provider, 'provider_unavailable:network', unavailable(provider, error), context);
    }
    if (!res.ok) {
      throw await refused(
        services,
        provider,
        `provider_unavailable:http_${res.status}`,
        unavailable(provider, undefined),
        context,
      );
    }
    try {
      return await res.json();
    } catch (error) {
      throw await refused(services, provider, 'provider_unavailable:garbage', unavailable(provider, error), context);
    }
  };
  const user = (await get('/user')) as { id?: unknown; login?: unknown; name?: unknown } | null;
  const emails = (await get('/user/emails')) as unknown;
  if (!user || (typeof user.id !== 'number' && typeof user.id !== 'string') || !Array.isArray(emails)) {
    throw await refused(services, provider, 'provider_unavailable:garbage', unavailable(provider, undefined), context);
  }
  const primary = (emails as { email?: unknown; primary?: unknown; verified?: unknown }[]).find(
    (e) => e && e.primary === true && typeof e.email === 'string',
  );
  const email = typeof primary?.email === 'string' ? primary.email.trim().toLowerCase() : undefined;
  const name = typeof user.name === 'string' && user.name.trim() !== '' ? user.name.trim() : undefined;
  return {
    subject: String(user.id),
    email,
    emailVerified: email !== undefined && primary?.verified === true,
    name,
    givenName: undefined,
    familyName: undefined,
    username: typeof user.login === 'string' ? user.login : undefined,
  };
}

async function signInWith(
  services: Services,
  provider: SsoProvider,
  profile: SsoProfile,
  state: { redirect_to: string | null; link_user_id: number | null },
  context: RequestContext,
  options: { kind: SessionKind },
): Promise<SsoOutcome> {
  const now = services.clock.now();
  const linked = await services.db
    .selectFrom('user_identities')
    .innerJoin('users', 'users.id', 'user_identities.user_id')
    .selectAll('users')
    .select(['user_identities.id as identity_id'])
    .where('user_identities.provider', '=', provider.name)
    .where('user_identities.subject', '=', profile.subject)
    .executeTakeFirst();

  // Linking from the account page: the signed-in person adds this identity to their own account.
  if (state.link_user_id !== null) {
    if (linked && linked.id !== state.link_user_id) {
      throw await refused(
        services,
        provider,
        'identity_linked_elsewhere',
        new AppError('CONFLICT', {
          detail: 'That account at the provider is already linked to another Gatehouse account.',
        }),
        context,
        state.link_user_id,
      );
    }
    if (!linked) await linkIdentity(services, state.link_user_id, provider, profile, context, 'account_page');
    return { kind: 'linked', redirectTo: state.redirect_to };
  }

  let user: User;
  let created = false;
  if (linked) {
    const { identity_id: identityId, ...account } = linked;
    user = account;
    await services.db
      .updateTable('user_identities')
      .set({ last_used_at: now, email: profile.email ?? null, email_verified: profile.emailVerified })
      .where('id', '=', identityId)
      .execute();
  } else {
    if (!profile.email) {
      throw await refused(
        services,
        provider,
        'no_email',
        new AppError('SSO_FAILED', { detail: 'The provider did not share an e-mail address; Gatehouse needs one.' }),
        context,
      );
    }
    const existing = await services.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', profile.email)
      .executeTakeFirst();
    if (existing) {
      // Pre-account-takeover defence: an address is linked automatically only when both sides proved it.
      const autoLink = provider.trusted && profile.emailVerified && existing.email_verified_at !== null;
      if (!autoLink) {
        throw await refused(
          services,
          provider,
          'email_belongs_to_account',
          new AppError('SSO_ACCOUNT_EXISTS', {
            detail:
              'An account with this e-mail address exists. Sign in to it with its password (or passkey), then link this provider from your account page.',
          }),
          context,
          existing.id,
        );
      }
      await linkIdentity(services, existing.id, provider, profile, context, 'verified_email');
      user = existing;
    } else {
      user = await createAccount(services, provider, profile, context);
      created = true;
    }
  }
  if (!user.is_active) {
    throw await refused(services, provider, 'account_disabled', new AppError('ACCOUNT_DISABLED'), context, user.id);
  }
  if (await hasTotp(services.db, user.id)) {
    services.metrics.logins.inc({ outcome: 'mfa_required' });
    const challenge = await mfaChallenge(services, user, user.email, loginSource(user, undefined), options.kind, 'fed');
    // The code step comes next: where the sign-in was going goes along with it.
    if (state.redirect_to === null) throw challenge;
    throw new AppError('MFA_REQUIRED', {
      ...challenge.options,
      extensions: { ...challenge.options.extensions, redirect_to: state.redirect_to },
    });
  }
  const issued = await recordLoginSuccess(services, user.email, user, context, {
    kind: options.kind,
    amr: ['fed'],
    hashUpgraded: false,
    method: 'sso',
  });
  await recordAudit(
    services.db,
    { action: 'sso_login', userId: user.id, details: { provider: provider.name, session_uuid: issued.session.uuid } },
    context,
  );
  services.metrics.logins.inc({ outcome: 'success' });
  return { kind: 'signed_in', issued: { ...issued, userId: user.id }, redirectTo: state.redirect_to, created };
}

async function linkIdentity(
  services: Services,
  userId: number,
  provider: SsoProvider,
  profile: SsoProfile,
  context: RequestContext,
  how: 'account_page' | 'verified_email',
): Promise<void> {
  await services.db.transaction().execute(async (trx) => {
    const user = await trx
      .selectFrom('users')
      .select(['email', 'username', 'first_name', 'language_code'])
      .where('id', '=', userId)
      .executeTakeFirstOrThrow();
    await trx
      .insertInto('user_identities')
      .values({
        user_id: userId,
        provider: provider.name,
        subject: profile.subject,
        email: profile.email ?? null,
        email_verified: profile.emailVerified,
        last_used_at: services.clock.now(),
      })
      .execute();
    await recordAudit(trx, { action: 'identity_linked', userId, details: { provider: provider.name, how } }, context);
    await queueMail(trx, {
      to: user.email,
      template: 'identity_linked',
      languageCode: user.language_code,
      data: {
        name: user.first_name ?? user.username,
        provider: provider.label.replace(/^Continue with /, ''),
        link: publicLink(services.config.publicUrl, 'account'),
        resetLink: publicLink(services.config.publicUrl, 'forgot-password'),
      },
    });
  });
  services.outbox.kick();
}

async function createAccount(services: Services, provider: SsoProvider, profile: SsoProfile, context: RequestContext) {
  const email = profile.email as string;
  const base = profile.username ? `${profile.username}@x` : email;
  for (let attempt = 0; attempt < 5; attempt++) {
    const username = usernameFromEmail(base, randomBytes(3).toString('hex'));
    try {
      return await services.db.transaction().execute(async (trx) => {
        const user = await trx
          .insertInto('users')
          .values({
            email,
            username,
            // No password: a random hash of the current algorithm that nothing matches (and costs what a real one does).
            password_hash: dummyHash({
              algorithm: services.config.passwordHasher,
              bcryptRounds: services.config.bcryptRounds,
            }),
            has_password: false,
            first_name: profile.givenName ?? null,
            last_name: profile.familyName ?? null,
            name: profile.name ?? null,
            email_verified_at: profile.emailVerified ? services.clock.now() : null,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await trx
          .insertInto('user_identities')
          .values({
            user_id: user.id,
            provider: provider.name,
            subject: profile.subject,
            email,
            email_verified: profile.emailVerified,
            last_used_at: services.clock.now(),
          })
          .execute();
        await recordAudit(
          trx,
          {
            action: 'sso_account_created',
            userId: user.id,
            details: { provider: provider.name, email_verified: profile.emailVerified },
          },
          context,
        );
        return user;
      });
    } catch (error) {
      // A username taken by a concurrent registration: another suffix. An address taken at once: the existing-account rules.
      const constraint = (error as { constraint?: string }).constraint ?? '';
      if (constraint.includes('username')) continue;
      if (constraint.includes('email')) {
        throw new AppError('SSO_ACCOUNT_EXISTS', {
          detail: 'An account with this e-mail address was just created. Sign in to it, then link this provider.',
        });
      }
      throw error;
    }
  }
  throw new Error('no free username after 5 attempts');
}

export interface IdentityView {
  id: string;
  provider: string;
  email: string | null;
  email_verified: boolean;
  created_at: string;
  last_used_at: string | null;
}

export async function listIdentities(services: Services, userId: number): Promise<IdentityView[]> {
  const rows = await services.db
    .selectFrom('user_identities')
    .select(['uuid', 'provider', 'email', 'email_verified', 'created_at', 'last_used_at'])
    .where('user_id', '=', userId)
    .orderBy('created_at')
    .execute();
  return rows.map((r) => ({
    id: r.uuid,
    provider: r.provider,
    email: r.email,
    email_verified: r.email_verified,
    created_at: r.created_at.toISOString(),
    last_used_at: r.last_used_at?.toISOString() ?? null,
  }));
}

/** `DELETE /me/identities/{id}`: never the last way in (no password, no passkey, no other identity). */
export async function unlinkIdentity(
  services: Services,
  user: { userId: number },
  identityId: string,
  context: RequestContext,
): Promise<boolean> {
  const id = canonicalUuid(identityId);
  if (id === undefined) return false;
  return services.db.transaction().execute(async (trx) => {
    const identity = await trx
      .selectFrom('user_identities')
      .select(['id', 'provider'])
      .where('uuid', '=', id)
      .where('user_id', '=', user.userId)
      .forUpdate()
      .executeTakeFirst();
    if (!identity) return false;
    const account = await trx
      .selectFrom('users')
      .select('has_password')
      .where('id', '=', user.userId)
      .executeTakeFirstOrThrow();
    const others = await trx
      .selectFrom('user_identities')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', user.userId)
      .where('id', '!=', identity.id)
      .executeTakeFirstOrThrow();
    const passkeys = await trx
      .selectFrom('passkeys')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('user_id', '=', user.userId)
      .executeTakeFirstOrThrow();
    const emailSignIn = services.config.emailSignIn !== 'off';
    if (!account.has_password && Number(others.n) === 0 && Number(passkeys.n) === 0 && !emailSignIn) {
      throw new AppError('CONFLICT', {
        detail:
          'This sign-in is the only way into the account: set a password (forgot password) or add a passkey first.',
      });
    }
    await trx.deleteFrom('user_identities').where('id', '=', identity.id).execute();
    await recordAudit(
      trx,
      { action: 'identity_unlinked', userId: user.userId, details: { provider: identity.provider } },
      context,
    );
    return true;
  });
}
