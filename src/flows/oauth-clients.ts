/**
 * The registry of OpenID Connect relying parties: what the provider reads from
 * `oauth_clients`. Metadata follows RFC 7591 (dynamic client registration),
 * though only superusers and the CLI register.
 */

import { randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import type { OauthClientsTable } from '../db/schema.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { DEFAULT_PAGE_SIZE, decodeCursor, type Page, pageOf } from '../domain/paging.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { characterLength, hasControlCharacters, isStorableText } from '../domain/text.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { sha256Hex } from '../infra/sha256.ts';

export const TOKEN_ENDPOINT_AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'none'] as const;
export const GRANT_TYPES = ['authorization_code', 'refresh_token'] as const;
export const SCOPES = ['openid', 'profile', 'email', 'offline_access', 'organizations'] as const;

type AuthMethod = (typeof TOKEN_ENDPOINT_AUTH_METHODS)[number];

export const MAX_REDIRECT_URIS = 20;
export const MAX_CLIENT_NAME_LENGTH = 200;
const MAX_URI_LENGTH = 2000;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
/** Schemes a browser runs or reads locally instead of navigating to an application. */
const FORBIDDEN_SCHEMES = new Set(['javascript:', 'data:', 'file:', 'vbscript:', 'blob:', 'about:', 'filesystem:']);

/** Client metadata as RFC 7591 §2 names it; only these members are read, others are ignored. */
export interface ClientMetadata {
  client_name?: unknown;
  redirect_uris?: unknown;
  post_logout_redirect_uris?: unknown;
  token_endpoint_auth_method?: unknown;
  grant_types?: unknown;
  response_types?: unknown;
  scope?: unknown;
  first_party?: unknown;
}

/** A registered client as superusers see it: never its secret or the secret's hash. */
export interface ClientView {
  client_id: string;
  /** When it was registered, in seconds since the epoch (RFC 7591 §3.2.1). */
  client_id_issued_at: number;
  client_name: string;
  redirect_uris: string[];
  post_logout_redirect_uris: string[];
  token_endpoint_auth_method: string;
  grant_types: string[];
  response_types: string[];
  scope: string;
  first_party: boolean;
}

/** The registration response (RFC 7591 §3.2.1); the secret is shown here and nowhere else. */
export interface ClientRegistration extends ClientView {
  /** Confidential clients only. */
  client_secret?: string;
  /** 0: the secret does not expire. Confidential clients only. */
  client_secret_expires_at?: number;
}

interface ValidMetadata {
  clientName: string;
  redirectUris: string[];
  postLogoutRedirectUris: string[];
  authMethod: AuthMethod;
  grantTypes: string[];
  scope: string;
  firstParty: boolean;
}

type ClientRow = Selectable<OauthClientsTable>;

function clientView(row: ClientRow): ClientView {
  return {
    client_id: row.client_id,
    client_id_issued_at: Math.floor(row.created_at.getTime() / 1000),
    client_name: row.client_name,
    redirect_uris: row.redirect_uris,
    post_logout_redirect_uris: row.post_logout_redirect_uris,
    token_endpoint_auth_method: row.token_endpoint_auth_method,
    grant_types: row.grant_types,
    response_types: ['code'],
    scope: row.scope,
    first_party: row.first_party,
  };
}

/** 256 random bits: stored as SHA-256, which is enough for a value nobody can guess (no slow hash needed). */
function newClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * Why a redirect URI is refused, or undefined when it is acceptable. The
 * provider compares redirect URIs exactly, so the URI is kept as given and
 * must need no normalising.
 */
function redirectUriProblem(value: unknown, production: boolean): string | undefined {
  if (typeof value !== 'string') return 'Must be a string';
  if (value.length === 0) return 'Must not be empty';
  if (value.length > MAX_URI_LENGTH) return `Must be at most ${MAX_URI_LENGTH} characters`;
  if (/\s/u.test(value) || hasControlCharacters(value) || !isStorableText(value)) {
    return 'Must not contain white space or control characters';
  }
  if (value.includes('*')) return 'Wildcards are not allowed; register each URI in full';
  if (value.includes('#')) return 'Must not contain a fragment (#)';
  if (!URL.canParse(value)) return 'Must be an absolute URI';
  const url = new URL(value);
  if (url.username || url.password) return 'Must not contain a user name or password';
  if (FORBIDDEN_SCHEMES.has(url.protocol)) return `The ${url.protocol} scheme is not allowed`;
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') {
    // Loopback redirects never leave the machine (RFC 8252 §7.3); elsewhere plain HTTP exposes the code.
    if (LOOPBACK_HOSTS.has(url.hostname) || !production) return undefined;
    return 'Must use https (http only for localhost, 127.0.0.1 or [::1])';
  }
  // Native apps: a private-use scheme in reverse domain name form (RFC 8252 §7.1), e.g. com.example.app:/callback.
  if (!url.protocol.slice(0, -1).includes('.')) {
    return 'Must use https, http on a loopback host, or a private-use scheme such as com.example.app:';
  }
  return undefined;
}

function redirectUriList(
  field: string,
  value: unknown,
  options: { required: boolean; production: boolean },
  errors: FieldError[],
): string[] {
  if (value === undefined || value === null) {
    if (options.required) errors.push({ field, message: 'Field is required', code: 'required' });
    return [];
  }
  if (!Array.isArray(value)) {
    errors.push({ field, message: 'Must be an array of URIs', code: 'type' });
    return [];
  }
  if (options.required && value.length === 0) {
    errors.push({ field, message: 'Give at least one URI', code: 'minItems' });
    return [];
  }
  if (value.length > MAX_REDIRECT_URIS) {
    errors.push({ field, message: `Give at most ${MAX_REDIRECT_URIS} URIs`, code: 'maxItems' });
    return [];
  }
  value.forEach((uri, i) => {
    const problem = redirectUriProblem(uri, options.production);
    if (problem) errors.push({ field: `${field}.${i}`, message: problem, code: 'invalid_redirect_uri' });
  });
  return [...new Set(value.filter((uri): uri is string => typeof uri === 'string'))];
}

function stringList(field: string, value: unknown, errors: FieldError[]): string[] | undefined {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    errors.push({ field, message: 'Must be an array of strings', code: 'type' });
    return undefined;
  }
  return [...new Set(value)];
}

function metadataError(errors: FieldError[]): AppError {
  // RFC 7591 §3.2.2: a bad redirect URI has its own error code.
  const redirect = errors.some((e) => e.field === 'redirect_uris' || e.field.startsWith('redirect_uris.'));
  const first = errors[0]!;
  return new AppError('VALIDATION_ERROR', {
    detail: 'One or more fields are invalid',
    errors,
    extensions: {
      error: redirect ? 'invalid_redirect_uri' : 'invalid_client_metadata',
      error_description: `${first.field}: ${first.message}`,
    },
  });
}

/** Checks client metadata and fills in the RFC 7591 defaults; VALIDATION_ERROR lists every bad field. */
function validateMetadata(input: unknown, production: boolean): ValidMetadata {
  const errors: FieldError[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw metadataError([{ field: 'body', message: 'Must be a JSON object of client metadata', code: 'type' }]);
  }
  const metadata = input as ClientMetadata;

  let clientName = '';
  if (metadata.client_name === undefined || metadata.client_name === null) {
    errors.push({ field: 'client_name', message: 'Field is required', code: 'required' });
  } else if (typeof metadata.client_name !== 'string') {
    errors.push({ field: 'client_name', message: 'Must be a string', code: 'type' });
  } else {
    clientName = metadata.client_name.trim();
    if (clientName === '') errors.push({ field: 'client_name', message: 'Must not be empty', code: 'minLength' });
    else if (characterLength(clientName) > MAX_CLIENT_NAME_LENGTH) {
      errors.push({
        field: 'client_name',
        message: `Must be at most ${MAX_CLIENT_NAME_LENGTH} characters`,
        code: 'maxLength',
      });
    } else if (hasControlCharacters(clientName) || !isStorableText(clientName)) {
      errors.push({ field: 'client_name', message: 'Must not contain control characters', code: 'pattern' });
    }
  }

  const redirectUris = redirectUriList('redirect_uris', metadata.redirect_uris, { required: true, production }, errors);
  const postLogoutRedirectUris = redirectUriList(
    'post_logout_redirect_uris',
    metadata.post_logout_redirect_uris,
    { required: false, production },
    errors,
  );

  let authMethod: AuthMethod = 'client_secret_basic';
  if (metadata.token_endpoint_auth_method !== undefined) {
    const method = TOKEN_ENDPOINT_AUTH_METHODS.find((m) => m === metadata.token_endpoint_auth_method);
    if (method) authMethod = method;
    else {
      errors.push({
        field: 'token_endpoint_auth_method',
        message: `Must be one of ${TOKEN_ENDPOINT_AUTH_METHODS.join(', ')}`,
        code: 'enum',
      });
    }
  }

  let grantTypes: string[] = [...GRANT_TYPES];
  if (metadata.grant_types !== undefined) {
    const given = stringList('grant_types', metadata.grant_types, errors);
    if (given) {
      const refused = given.filter((g) => !(GRANT_TYPES as readonly string[]).includes(g));
      if (refused.length > 0) {
        // The implicit, password and client_credentials grants are not offered (OAuth 2.0 Security BCP).
        errors.push({
          field: 'grant_types',
          message: `Not supported: ${refused.join(', ')}; use ${GRANT_TYPES.join(', ')}`,
          code: 'enum',
        });
      } else if (!given.includes('authorization_code')) {
        errors.push({ field: 'grant_types', message: 'Must include authorization_code', code: 'contains' });
      } else grantTypes = given;
    }
  }

  if (metadata.response_types !== undefined) {
    const given = stringList('response_types', metadata.response_types, errors);
    if (given && (given.length !== 1 || given[0] !== 'code')) {
      errors.push({ field: 'response_types', message: 'Only ["code"] is supported', code: 'enum' });
    }
  }

  let scope: string = SCOPES.join(' ');
  if (metadata.scope !== undefined) {
    if (typeof metadata.scope !== 'string') {
      errors.push({ field: 'scope', message: 'Must be a space-separated string', code: 'type' });
    } else {
      const given = [...new Set(metadata.scope.split(' ').filter(Boolean))];
      const unknown = given.filter((s) => !(SCOPES as readonly string[]).includes(s));
      if (given.length === 0) errors.push({ field: 'scope', message: 'Give at least one scope', code: 'minLength' });
      else if (unknown.length > 0) {
        errors.push({
          field: 'scope',
          message: `Unknown scope: ${unknown.join(', ')}; use ${SCOPES.join(', ')}`,
          code: 'enum',
        });
      } else scope = given.join(' ');
    }
  }

  let firstParty = false;
  if (metadata.first_party !== undefined) {
    if (typeof metadata.first_party === 'boolean') firstParty = metadata.first_party;
    else errors.push({ field: 'first_party', message: 'Must be true or false', code: 'type' });
  }

  if (errors.length > 0) throw metadataError(errors);
  return { clientName, redirectUris, postLogoutRedirectUris, authMethod, grantTypes, scope, firstParty };
}

/**
 * Registers a client. A confidential client (any auth method but `none`) gets
 * a secret, returned here once and stored as SHA-256. Audited as
 * `oauth_client_created`.
 */
export async function createClient(
  services: Services,
  input: ClientMetadata,
  context: RequestContext,
  actorUserId: number | null,
): Promise<ClientRegistration> {
  const valid = validateMetadata(input, services.config.environment === 'production');
  // Hex: a client id never starts with `-`, which a command line would take for an option.
  const clientId = randomBytes(16).toString('hex');
  const secret = valid.authMethod === 'none' ? undefined : newClientSecret();
  const now = services.clock.now();
  const row = await services.db.transaction().execute(async (trx) => {
    const row = await trx
      .insertInto('oauth_clients')
      .values({
        client_id: clientId,
        client_secret_hash: secret === undefined ? null : sha256Hex(secret),
        client_name: valid.clientName,
        redirect_uris: JSON.stringify(valid.redirectUris),
        post_logout_redirect_uris: JSON.stringify(valid.postLogoutRedirectUris),
        token_endpoint_auth_method: valid.authMethod,
        grant_types: JSON.stringify(valid.grantTypes),
        scope: valid.scope,
        first_party: valid.firstParty,
        created_at: now,
        updated_at: now,
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(
      trx,
      {
        action: 'oauth_client_created',
        userId: actorUserId,
        details: { client_id: row.client_id, client_name: row.client_name, first_party: row.first_party },
      },
      context,
    );
    return row;
  });
  const view = clientView(row);
  if (secret === undefined) return view;
  return { ...view, client_secret: secret, client_secret_expires_at: 0 };
}

export interface ClientQuery {
  cursor?: string | undefined;
  limit?: number | undefined;
}

/** Registered clients, newest first, a page at a time. */
export async function listClients(services: Services, query: ClientQuery = {}): Promise<Page<ClientView>> {
  const limit = query.limit ?? DEFAULT_PAGE_SIZE;
  const after = decodeCursor(query.cursor);
  let q = services.db.selectFrom('oauth_clients').selectAll();
  if (after !== undefined) q = q.where('id', '<', after);
  const rows = await q
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return pageOf(rows, limit, clientView);
}

function notFound(): AppError {
  return new AppError('NOT_FOUND', { detail: 'No such client' });
}

/** A client_id from a path; text PostgreSQL cannot store names no client, so it is not even looked up. */
function lookupId(clientId: string): string {
  if (!isStorableText(clientId)) throw notFound();
  return clientId;
}

/** One client; NOT_FOUND for an unknown client_id. */
export async function getClient(services: Services, clientId: string): Promise<ClientView> {
  const row = await services.db
    .selectFrom('oauth_clients')
    .selectAll()
    .where('client_id', '=', lookupId(clientId))
    .executeTakeFirst();
  if (!row) throw notFound();
  return clientView(row);
}

/**
 * Removes a client with everything the provider kept for it (codes, grants,
 * tokens) and revokes the Gatehouse sessions of its tokens at once. Audited
 * as `oauth_client_deleted`; NOT_FOUND for an unknown client_id.
 */
export async function deleteClient(
  services: Services,
  clientId: string,
  context: RequestContext,
  actorUserId: number | null,
): Promise<void> {
  lookupId(clientId);
  const now = services.clock.now();
  const revoked = await services.db.transaction().execute(async (trx) => {
    const row = await trx
      .deleteFrom('oauth_clients')
      .where('client_id', '=', clientId)
      .returning(['client_id', 'client_name', 'first_party'])
      .executeTakeFirst();
    if (!row) throw notFound();
    const payloads = await trx.deleteFrom('oidc_payloads').where('client_id', '=', clientId).executeTakeFirst();
    const sessions = await trx
      .updateTable('sessions')
      .set({ revoked_at: now, revoked_reason: 'admin' })
      .where('oauth_client_id', '=', clientId)
      .where('revoked_at', 'is', null)
      .returning('uuid')
      .execute();
    await recordAudit(
      trx,
      {
        action: 'oauth_client_deleted',
        userId: actorUserId,
        details: {
          client_id: row.client_id,
          client_name: row.client_name,
          first_party: row.first_party,
          provider_records_deleted: Number(payloads.numDeletedRows),
          sessions_revoked: sessions.length,
        },
      },
      context,
    );
    return sessions;
  });
  await services.revocations.published(revoked.map((s) => ({ uuid: s.uuid, revokedAt: now })));
}

/**
 * Gives a confidential client a new secret, returned once; the old one stops
 * working at once. A public client has no secret (409 CONFLICT). Audited as
 * `oauth_client_secret_rotated`.
 */
export async function rotateClientSecret(
  services: Services,
  clientId: string,
  context: RequestContext,
  actorUserId: number | null,
): Promise<ClientRegistration> {
  lookupId(clientId);
  const secret = newClientSecret();
  const now = services.clock.now();
  const row = await services.db.transaction().execute(async (trx) => {
    const current = await trx
      .selectFrom('oauth_clients')
      .select(['client_secret_hash'])
      .where('client_id', '=', clientId)
      .forUpdate()
      .executeTakeFirst();
    if (!current) throw notFound();
    if (current.client_secret_hash === null) {
      throw new AppError('CONFLICT', {
        detail: 'A public client (token_endpoint_auth_method none) has no secret to rotate',
      });
    }
    const row = await trx
      .updateTable('oauth_clients')
      .set({ client_secret_hash: sha256Hex(secret), updated_at: now })
      .where('client_id', '=', clientId)
      .returningAll()
      .executeTakeFirstOrThrow();
    await recordAudit(
      trx,
      {
        action: 'oauth_client_secret_rotated',
        userId: actorUserId,
        details: { client_id: row.client_id, client_name: row.client_name, first_party: row.first_party },
      },
      context,
    );
    return row;
  });
  return { ...clientView(row), client_secret: secret, client_secret_expires_at: 0 };
}
