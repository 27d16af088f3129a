import { type Kysely, sql } from 'kysely';
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Database } from '../db/schema.ts';

/** Models that are live only while the Gatehouse session standing for their grant is. */
const SESSION_BOUND = new Set(['AccessToken', 'RefreshToken', 'AuthorizationCode', 'Grant']);

/**
 * What Gatehouse does around the provider's storage: its tokens are Gatehouse
 * sessions (listed, revoked, audited), its browser session follows the
 * Gatehouse page session.
 */
export interface OidcStoreHooks {
  /** A token was saved (issued): the grant's Gatehouse session is created or extended. */
  tokenSaved(model: 'AccessToken' | 'RefreshToken', payload: AdapterPayload, expiresAt: Date | null): Promise<void>;
  /** An authorization code was issued (the person authorized the client). */
  codeIssued(payload: AdapterPayload): Promise<void>;
  /** A spent authorization code or refresh token was presented again. */
  reused(model: string, payload: AdapterPayload): Promise<void>;
  /** Every token of a grant was revoked (RFC 7009, a reused code, the person or an admin). */
  grantRevoked(grantId: string): Promise<void>;
  /**
   * The Gatehouse page session of the browser making this request: undefined
   * when the request is not a browser's (a client at the token endpoint),
   * null when the browser is not signed in on the pages.
   */
  pageSession(): Promise<{ sessionUuid: string; accountId: string } | null | undefined>;
  /** The error thrown when a one-time artefact turns out spent at the moment it is consumed. */
  alreadyConsumed(model: string): Error;
}

/**
 * `oidc-provider`'s storage on Gatehouse's database (PostgreSQL or PGlite):
 * every interaction, provider session, grant, code and token is a row of
 * `oidc_payloads`, so a restart loses nothing and every instance behind the
 * database sees the same state. Clients are read from `oauth_clients`.
 */
export class DatabaseOidcAdapter implements Adapter {
  readonly #model: string;
  readonly #db: Kysely<Database>;
  readonly #hooks: OidcStoreHooks;

  constructor(model: string, db: Kysely<Database>, hooks: OidcStoreHooks) {
    this.#model = model;
    this.#db = db;
    this.#hooks = hooks;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    if (this.#model === 'Client') throw new Error('clients are registered with `gatehouse clients` or the admin API');
    const expiresAt = typeof expiresIn === 'number' ? new Date(Date.now() + expiresIn * 1000) : null;
    const row: Record<string, unknown> = {
      payload: JSON.stringify(payload),
      grant_id: payload.grantId ?? null,
      uid: payload.uid ?? null,
      user_code: payload.userCode ?? null,
      account_id: payload.accountId ?? null,
      // An interaction names its client only in the authorization request's parameters.
      client_id: payload.clientId ?? interactionClient(this.#model, payload) ?? null,
      expires_at: expiresAt,
    };
    // The provider's browser session follows the page session it was signed in with.
    if (this.#model === 'Session' && payload.accountId) {
      const page = await this.#hooks.pageSession();
      if (page !== undefined) {
        row.page_session_uuid = page && page.accountId === payload.accountId ? page.sessionUuid : null;
      }
    }
    await this.#db
      .insertInto('oidc_payloads')
      .values({ model: this.#model, id, ...(row as { payload: string }) })
      .onConflict((oc) => oc.columns(['model', 'id']).doUpdateSet(row))
      .execute();
    if (this.#model === 'AccessToken' || this.#model === 'RefreshToken') {
      await this.#hooks.tokenSaved(this.#model, payload, expiresAt);
    } else if (this.#model === 'AuthorizationCode') {
      await this.#hooks.codeIssued(payload);
    }
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    if (this.#model === 'Client') return this.#findClient(id);
    const row = await this.#db
      .selectFrom('oidc_payloads as p')
      .leftJoin('sessions as s', (join) => join.onRef('s.oauth_grant_id', '=', sql`coalesce(p.grant_id, p.id)`))
      .leftJoin('users as owner', 'owner.id', 's.user_id')
      .leftJoin('sessions as page', 'page.uuid', 'p.page_session_uuid')
      .select([
        'p.payload',
        'p.consumed_at',
        's.revoked_at',
        'owner.is_active as owner_active',
        'page.uuid as page_uuid',
        'page.revoked_at as page_revoked_at',
        'page.expires_at as page_expires_at',
      ])
      .where('p.model', '=', this.#model)
      .where('p.id', '=', id)
      .executeTakeFirst();
    if (!row) return undefined;
    // Tokens of a signed-out Gatehouse session (logout-all, a revoked session, a disabled account) are gone.
    if (SESSION_BOUND.has(this.#model) && row.revoked_at !== null && row.revoked_at !== undefined) return undefined;
    // So are those of a disabled account, at every endpoint (introspection as well as userinfo and refresh).
    if (SESSION_BOUND.has(this.#model) && row.owner_active === false) return undefined;
    const payload = row.payload as AdapterPayload;
    if (row.consumed_at) {
      payload.consumed = Math.floor(row.consumed_at.getTime() / 1000);
      await this.#hooks.reused(this.#model, payload);
    }
    if (this.#model === 'Session' && payload.accountId) {
      const page = await this.#hooks.pageSession();
      // A browser: the same person is still signed in on the pages. A client (tokens bound to the
      // provider session): the page session it was signed in with has not ended.
      const live =
        page === undefined
          ? !!row.page_uuid && row.page_revoked_at === null && (row.page_expires_at?.getTime() ?? 0) > Date.now()
          : page !== null && page.accountId === payload.accountId;
      if (!live) return undefined;
    }
    return payload;
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    const row = await this.#db
      .selectFrom('oidc_payloads')
      .select('id')
      .where('model', '=', this.#model)
      .where('uid', '=', uid)
      .executeTakeFirst();
    return row ? this.find(row.id) : undefined;
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    const row = await this.#db
      .selectFrom('oidc_payloads')
      .select('id')
      .where('model', '=', this.#model)
      .where('user_code', '=', userCode)
      .executeTakeFirst();
    return row ? this.find(row.id) : undefined;
  }

  /**
   * Single use, atomically: of two requests presenting the same code at once
   * (on one instance or two), only one marks it consumed; the other is a reuse.
   */
  async consume(id: string): Promise<void> {
    const spent = await this.#db
      .updateTable('oidc_payloads')
      .set({ consumed_at: new Date() })
      .where('model', '=', this.#model)
      .where('id', '=', id)
      .where('consumed_at', 'is', null)
      .returning(['payload', 'grant_id'])
      .executeTakeFirst();
    if (spent) return;
    const row = await this.#db
      .selectFrom('oidc_payloads')
      .select(['payload', 'grant_id'])
      .where('model', '=', this.#model)
      .where('id', '=', id)
      .executeTakeFirst();
    if (row) await this.#hooks.reused(this.#model, row.payload as AdapterPayload);
    if (row?.grant_id) await this.revokeByGrantId(row.grant_id);
    throw this.#hooks.alreadyConsumed(this.#model);
  }

  async destroy(id: string): Promise<void> {
    await this.#db.deleteFrom('oidc_payloads').where('model', '=', this.#model).where('id', '=', id).execute();
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.#db
      .deleteFrom('oidc_payloads')
      .where((eb) => eb.or([eb('grant_id', '=', grantId), eb.and([eb('model', '=', 'Grant'), eb('id', '=', grantId)])]))
      .execute();
    await this.#hooks.grantRevoked(grantId);
  }

  async #findClient(clientId: string): Promise<AdapterPayload | undefined> {
    const client = await this.#db
      .selectFrom('oauth_clients')
      .select([
        'client_id',
        'client_secret_hash',
        'client_name',
        'redirect_uris',
        'post_logout_redirect_uris',
        'token_endpoint_auth_method',
        'grant_types',
        'scope',
      ])
      .where('client_id', '=', clientId)
      .executeTakeFirst();
    if (!client) return undefined;
    return {
      client_id: client.client_id,
      // The SHA-256 of the secret: the provider compares a presented secret by hashing it (see compareClientSecret).
      ...(client.client_secret_hash ? { client_secret: client.client_secret_hash } : {}),
      client_name: client.client_name,
      redirect_uris: client.redirect_uris,
      post_logout_redirect_uris: client.post_logout_redirect_uris,
      token_endpoint_auth_method: client.token_endpoint_auth_method as AdapterPayload['token_endpoint_auth_method'],
      grant_types: client.grant_types,
      response_types: ['code'],
      scope: client.scope,
    };
  }
}

function interactionClient(model: string, payload: AdapterPayload): string | undefined {
  const clientId =
    model === 'Interaction' ? (payload.params as { client_id?: unknown } | undefined)?.client_id : undefined;
  return typeof clientId === 'string' ? clientId : undefined;
}
