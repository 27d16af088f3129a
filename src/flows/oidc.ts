import { randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import type { RequestContext } from '../domain/request-context.ts';
import { AUDIT_COLUMNS, type AuditEntry, auditSelection, recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { amrOf } from '../infra/sessions.ts';
import { sha256Hex } from '../infra/sha256.ts';
import { authenticateBrowserSession } from './authenticate.ts';

/**
 * Gatehouse as an OpenID Connect provider: what `oidc-provider` asks of
 * Gatehouse (accounts and their claims, the person signed in on the pages,
 * the clients), and what Gatehouse does around it (a grant's tokens are a
 * Gatehouse session; consent and connected apps on the account page; audit).
 */

/** The scopes a client may ask for, and what each means to the person on the consent page. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const OIDC_SCOPES = {
  openid: 'Sign you in with your Gatehouse account',
  profile: 'Your name and username',
  email: 'Your email address and whether it is verified',
  offline_access: 'Stay signed in when you are not using it (refresh tokens)',
  organizations: 'Your organizations and your role in each',
} as const;

export const OIDC_CLAIMS = {
  // `amr` (RFC 8176): how the person signed in (`pwd`, `otp`, `backup_code`, `webauthn`, `email`).
  openid: ['sub', 'amr'],
  profile: ['name', 'given_name', 'family_name', 'preferred_username', 'locale', 'updated_at'],
  email: ['email', 'email_verified'],
  organizations: ['organizations'],
} as const;

export interface AccountClaims {
  sub: string;
  name?: string;
  given_name?: string;
  family_name?: string;
  preferred_username: string;
  locale: string;
  updated_at: number;
  email: string;
  email_verified: boolean;
  organizations: { uuid: string; name: string; role: string }[];
}

/** The claims of an active account (by its uuid, the `sub`), or undefined: unknown or disabled. */
export async function accountClaims(services: Services, uuid: string): Promise<AccountClaims | undefined> {
  if (!UUID.test(uuid)) return undefined;
  const user = await services.db
    .selectFrom('users')
    .select([
      'id',
      'uuid',
      'email',
      'username',
      'first_name',
      'last_name',
      'name',
      'language_code',
      'email_verified_at',
      'updated_at',
      'is_active',
    ])
    .where('uuid', '=', uuid)
    .executeTakeFirst();
  if (!user?.is_active) return undefined;
  const organizations = await services.db
    .selectFrom('memberships')
    .innerJoin('organizations', 'organizations.id', 'memberships.organization_id')
    .innerJoin('roles', 'roles.id', 'memberships.role_id')
    .select(['organizations.uuid', 'organizations.name', 'roles.name as role'])
    .where('memberships.user_id', '=', user.id)
    .orderBy('organizations.name')
    .execute();
  const fullName = user.name ?? ([user.first_name, user.last_name].filter(Boolean).join(' ') || undefined);
  return {
    sub: user.uuid,
    ...(fullName ? { name: fullName } : {}),
    ...(user.first_name ? { given_name: user.first_name } : {}),
    ...(user.last_name ? { family_name: user.last_name } : {}),
    preferred_username: user.username,
    locale: user.language_code,
    updated_at: Math.floor(user.updated_at.getTime() / 1000),
    email: user.email,
    email_verified: user.email_verified_at !== null,
    organizations,
  };
}

/** Who is signed in on the pages, as the provider's login result: the account, how and when. */
export async function pageLogin(
  services: Services,
  sessionCookie: string | undefined,
): Promise<{ accountId: string; amr: string[]; authTime: number; userId: number } | undefined> {
  const browser = await authenticateBrowserSession(services, sessionCookie);
  if (!browser) return undefined;
  const row = await services.db
    .selectFrom('sessions')
    .select(['amr', 'auth_time'])
    .where('id', '=', browser.auth.sessionId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    accountId: browser.auth.userUuid,
    amr: amrOf(row.amr),
    authTime: Math.floor(row.auth_time.getTime() / 1000),
    userId: browser.auth.userId,
  };
}

/** The page session of a browser's session cookie: its uuid and account, or undefined when it is not live. */
export async function pageSessionOf(
  services: Services,
  sessionCookie: string | undefined,
): Promise<{ sessionUuid: string; accountId: string } | undefined> {
  const browser = await authenticateBrowserSession(services, sessionCookie);
  return browser ? { sessionUuid: browser.auth.sessionUuid, accountId: browser.auth.userUuid } : undefined;
}

export interface ClientInfo {
  clientId: string;
  name: string;
  firstParty: boolean;
  /** Origins the browser may be sent to after a form on a page of this client's sign-in. */
  origins: string[];
}

export async function clientInfo(services: Services, clientId: string): Promise<ClientInfo | undefined> {
  const row = await services.db
    .selectFrom('oauth_clients')
    .select(['client_id', 'client_name', 'first_party', 'redirect_uris', 'post_logout_redirect_uris'])
    .where('client_id', '=', clientId)
    .executeTakeFirst();
  if (!row) return undefined;
  return {
    clientId: row.client_id,
    name: row.client_name,
    firstParty: row.first_party,
    origins: originsOf([...row.redirect_uris, ...row.post_logout_redirect_uris]),
  };
}

/**
 * The origins a page's form may end up at when it continues an authorization
 * (`redirect_to` = the interaction): its client's redirect URIs. Browsers
 * apply a form's `form-action` to every redirect that follows the post.
 */
export async function interactionOrigins(services: Services, uid: string): Promise<string[]> {
  const row = await services.db
    .selectFrom('oidc_payloads')
    .innerJoin('oauth_clients', (join) =>
      join.on('oauth_clients.client_id', '=', sql<string>`oidc_payloads.payload -> 'params' ->> 'client_id'`),
    )
    .select(['oauth_clients.redirect_uris'])
    .where('oidc_payloads.model', '=', 'Interaction')
    .where('oidc_payloads.id', '=', uid)
    .executeTakeFirst();
  return row ? originsOf(row.redirect_uris) : [];
}

function originsOf(uris: string[]): string[] {
  return [
    ...new Set(
      uris.flatMap((uri) => {
        if (!URL.canParse(uri)) return [];
        const url = new URL(uri);
        return url.protocol === 'http:' || url.protocol === 'https:' ? [url.origin] : [];
      }),
    ),
  ];
}

/**
 * A grant's tokens were issued: its Gatehouse session is created (first
 * tokens) or extended (a refresh), and an access token's issue audited, in
 * one statement.
 */
export async function grantTokensIssued(
  services: Services,
  token: { grantId: string; clientId: string; accountId: string; model: 'AccessToken' | 'RefreshToken'; gty?: string },
  expiresAt: Date | null,
  context: RequestContext,
): Promise<void> {
  if (!UUID.test(token.accountId)) return;
  const now = new Date();
  const expires = expiresAt ?? new Date(now.getTime() + services.tokens.accessLifetimeSeconds * 1000);
  const db = services.db;
  const upsert = db.with('session', (qc) =>
    qc
      .insertInto('sessions')
      .columns([
        'user_id',
        'refresh_token_hash',
        'kind',
        'oauth_grant_id',
        'oauth_client_id',
        'user_agent',
        'ip_address',
        'created_at',
        'last_used_at',
        'expires_at',
      ])
      .expression((eb) =>
        eb
          .selectFrom('users')
          .select([
            'users.id',
            sql.val(sha256Hex(randomBytes(32).toString('base64url'))).as('refresh_token_hash'),
            sql.val('oauth').as('kind'),
            sql.val(token.grantId).as('oauth_grant_id'),
            sql.val(token.clientId).as('oauth_client_id'),
            sql.val(context.userAgent).as('user_agent'),
            sql.val(context.ip).as('ip_address'),
            sql.val(now).as('created_at'),
            sql.val(now).as('last_used_at'),
            sql.val(expires).as('expires_at'),
          ])
          .where('users.uuid', '=', token.accountId),
      )
      .onConflict((oc) =>
        oc.column('oauth_grant_id').doUpdateSet({
          last_used_at: now,
          expires_at: sql`greatest(sessions.expires_at, excluded.expires_at)`,
        }),
      )
      .returning(['user_id', sql<boolean>`(xmax = 0)`.as('inserted')]),
  );
  let inserted: boolean;
  if (token.model === 'RefreshToken') {
    const [row] = await upsert.selectFrom('session').select(['user_id', 'inserted']).execute();
    inserted = row?.inserted ?? false;
  } else {
    const audit: AuditEntry = {
      action: 'oauth_token_issued',
      details: { client_id: token.clientId, grant_type: token.gty ?? null },
    };
    const [row] = await upsert
      .with('audit', (qc) =>
        qc
          .insertInto('audit_logs')
          .columns(AUDIT_COLUMNS)
          .expression((eb) => eb.selectFrom('session').select(auditSelection(audit, context, 'session.user_id'))),
      )
      .selectFrom('session')
      .select(['user_id', 'inserted'])
      .execute();
    inserted = row?.inserted ?? false;
  }
  if (!inserted) return;
  // The grant was revoked while its first tokens were being issued (its code presented twice at once): the
  // revocation may have run before this session existed, so the session goes now. Read after the insert committed.
  const grant = await db
    .selectFrom('oidc_payloads')
    .select('id')
    .where('model', '=', 'Grant')
    .where('id', '=', token.grantId)
    .executeTakeFirst();
  if (!grant) await grantRevoked(services, token.grantId);
}

/** An authorization code was issued: `oauth_authorized`, in one statement. */
export async function codeIssued(
  services: Services,
  code: { clientId: string; accountId: string; scope?: string },
  context: RequestContext,
): Promise<void> {
  if (!UUID.test(code.accountId)) return;
  const audit: AuditEntry = {
    action: 'oauth_authorized',
    details: { client_id: code.clientId, scope: code.scope ?? '' },
  };
  await services.db
    .insertInto('audit_logs')
    .columns(AUDIT_COLUMNS)
    .expression((eb) =>
      eb
        .selectFrom('users')
        .select(auditSelection(audit, context, 'users.id'))
        .where('users.uuid', '=', code.accountId),
    )
    .execute();
}

/** A spent code (or refresh token) came back: the provider revokes what it issued; this records it. */
export async function spentGrantSourceReused(
  services: Services,
  model: string,
  source: { clientId?: string; accountId?: string; grantId?: string },
  context: RequestContext,
): Promise<void> {
  const user = source.accountId ? await userIdOf(services, source.accountId) : undefined;
  await recordAudit(
    services.db,
    {
      action: model === 'AuthorizationCode' ? 'oauth_code_reused' : 'refresh_token_reuse',
      userId: user ?? null,
      details: { client_id: source.clientId ?? null, grant_id: source.grantId ?? null },
    },
    context,
  );
}

/** Every token of a grant is gone: its Gatehouse session is signed out. */
export async function grantRevoked(services: Services, grantId: string): Promise<void> {
  const now = new Date();
  const rows = await services.db
    .updateTable('sessions')
    .set({ revoked_at: now, revoked_reason: 'revoked_by_user' })
    .where('oauth_grant_id', '=', grantId)
    .where('revoked_at', 'is', null)
    .returning('uuid')
    .execute();
  await services.revocations.published(rows.map((r) => ({ uuid: r.uuid, revokedAt: now })));
}

export async function consentGranted(
  services: Services,
  userUuid: string,
  grant: { clientId: string; scopes: string[]; firstParty: boolean },
  context: RequestContext,
): Promise<void> {
  const user = await userIdOf(services, userUuid);
  await recordAudit(
    services.db,
    {
      action: 'oauth_consent_granted',
      userId: user ?? null,
      details: { client_id: grant.clientId, scopes: grant.scopes, first_party: grant.firstParty },
    },
    context,
  );
}

export interface ConnectedApp {
  client_id: string;
  client_name: string;
  scopes: string[];
  granted_at: string;
}

/** The clients a person has granted access to (the account page's "Connected apps"). */
export async function connectedApps(services: Services, userUuid: string): Promise<ConnectedApp[]> {
  const rows = await services.db
    .selectFrom('oidc_payloads')
    .innerJoin('oauth_clients', 'oauth_clients.client_id', 'oidc_payloads.client_id')
    .select(['oauth_clients.client_id', 'oauth_clients.client_name', 'oidc_payloads.payload'])
    .where('oidc_payloads.model', '=', 'Grant')
    .where('oidc_payloads.account_id', '=', userUuid)
    .where((eb) => eb.or([eb('oidc_payloads.expires_at', 'is', null), eb('oidc_payloads.expires_at', '>', new Date())]))
    .execute();
  const byClient = new Map<string, ConnectedApp>();
  for (const row of rows) {
    const payload = row.payload as { openid?: { scope?: string }; iat?: number };
    const scopes = (payload.openid?.scope ?? '').split(' ').filter(Boolean);
    const grantedAt = new Date((payload.iat ?? 0) * 1000).toISOString();
    const known = byClient.get(row.client_id);
    if (known) {
      known.scopes = [...new Set([...known.scopes, ...scopes])];
      if (grantedAt > known.granted_at) known.granted_at = grantedAt;
    } else {
      byClient.set(row.client_id, {
        client_id: row.client_id,
        client_name: row.client_name,
        scopes,
        granted_at: grantedAt,
      });
    }
  }
  return [...byClient.values()].sort((a, b) => a.client_name.localeCompare(b.client_name));
}

/**
 * Takes back what a person granted a client: its grants and every token of
 * them, and the Gatehouse sessions standing for them. False when nothing was granted.
 */
export async function revokeConnectedApp(
  services: Services,
  user: { userId: number; userUuid: string },
  clientId: string,
  context: RequestContext,
): Promise<boolean> {
  const now = new Date();
  const result = await services.db.transaction().execute(async (trx) => {
    const grants = await trx
      .deleteFrom('oidc_payloads')
      .where('model', '=', 'Grant')
      .where('account_id', '=', user.userUuid)
      .where('client_id', '=', clientId)
      .returning('id')
      .execute();
    if (grants.length === 0) return undefined;
    await trx
      .deleteFrom('oidc_payloads')
      .where(
        'grant_id',
        'in',
        grants.map((g) => g.id),
      )
      .execute();
    const sessions = await trx
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: 'revoked_by_user' })
      .where('user_id', '=', user.userId)
      .where('oauth_client_id', '=', clientId)
      .where('revoked_at', 'is', null)
      .returning('uuid')
      .execute();
    await recordAudit(
      trx,
      { action: 'oauth_consent_revoked', userId: user.userId, details: { client_id: clientId } },
      context,
    );
    return sessions;
  });
  if (!result) return false;
  await services.revocations.published(result.map((r) => ({ uuid: r.uuid, revokedAt: now })));
  return true;
}

/** End-session: the page session of this browser ends with the provider's. */
export async function endPageSession(
  services: Services,
  sessionCookie: string | undefined,
  clientId: string | undefined,
  context: RequestContext,
): Promise<void> {
  const browser = await authenticateBrowserSession(services, sessionCookie);
  if (!browser) return;
  const now = new Date();
  await services.db.transaction().execute(async (trx) => {
    await trx
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: 'logout' })
      .where('id', '=', browser.auth.sessionId)
      .where('revoked_at', 'is', null)
      .execute();
    await recordAudit(
      trx,
      { action: 'oauth_logout', userId: browser.auth.userId, details: { client_id: clientId ?? null } },
      context,
    );
  });
  await services.revocations.published([{ uuid: browser.auth.sessionUuid, revokedAt: now }]);
}

async function userIdOf(services: Services, uuid: string): Promise<number | undefined> {
  if (!UUID.test(uuid)) return undefined;
  const row = await services.db.selectFrom('users').select('id').where('uuid', '=', uuid).executeTakeFirst();
  return row?.id;
}
