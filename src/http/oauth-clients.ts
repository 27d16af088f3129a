import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import {
  createClient,
  deleteClient,
  GRANT_TYPES,
  getClient,
  listClients,
  MAX_CLIENT_NAME_LENGTH,
  MAX_REDIRECT_URIS,
  rotateClientSecret,
  SCOPES,
  TOKEN_ENDPOINT_AUTH_METHODS,
} from '../flows/oauth-clients.ts';
import { requireSuperuser } from './auth-guard.ts';
import { problems } from './schemas.ts';

const REDIRECT_URI_RULES =
  'Absolute, without fragment, wildcard or user name: `https:`; `http:` on localhost, 127.0.0.1 or [::1] (any host outside ENVIRONMENT=production); or a private-use scheme in reverse domain name form for native apps (`com.example.app:/callback`). Compared exactly.';

const RedirectUris = (description: string) =>
  Type.Array(Type.String({ description: REDIRECT_URI_RULES }), { maxItems: MAX_REDIRECT_URIS, description });

const ClientMetadata = Type.Object(
  {
    client_name: Type.String({
      minLength: 1,
      maxLength: MAX_CLIENT_NAME_LENGTH,
      description: 'Shown on the consent page; trimmed, 1 to 200 characters',
    }),
    redirect_uris: RedirectUris('Where authorization responses may be sent; 1 to 20'),
    post_logout_redirect_uris: Type.Optional(
      RedirectUris('Where the end-session endpoint may send the browser after logout; default none'),
    ),
    token_endpoint_auth_method: Type.Optional(
      Type.Enum(TOKEN_ENDPOINT_AUTH_METHODS, {
        default: 'client_secret_basic',
        description: '`none` registers a public client (a browser or native app, PKCE only) without a secret',
      }),
    ),
    grant_types: Type.Optional(
      Type.Array(Type.Enum(GRANT_TYPES), {
        default: [...GRANT_TYPES],
        description: 'Must include authorization_code; `implicit`, `password` and `client_credentials` are not offered',
      }),
    ),
    response_types: Type.Optional(Type.Array(Type.Literal('code'), { description: 'Only ["code"]' })),
    scope: Type.Optional(
      Type.String({
        default: SCOPES.join(' '),
        description: `Space-separated scopes the client may ask for, among: ${SCOPES.join(', ')}`,
      }),
    ),
    first_party: Type.Optional(
      Type.Boolean({ default: false, description: 'A first-party client skips the consent page' }),
    ),
  },
  { additionalProperties: true, description: 'Client metadata (RFC 7591 §2); other members are ignored' },
);

const clientProperties = {
  client_id: Type.String(),
  client_id_issued_at: Type.Integer({ description: 'Registration time, seconds since the epoch' }),
  client_name: Type.String(),
  redirect_uris: Type.Array(Type.String()),
  post_logout_redirect_uris: Type.Array(Type.String()),
  token_endpoint_auth_method: Type.String(),
  grant_types: Type.Array(Type.String()),
  response_types: Type.Array(Type.String()),
  scope: Type.String(),
  first_party: Type.Boolean(),
};

const Client = Type.Object(clientProperties, { description: 'A registered client, without its secret' });

const ClientRegistration = Type.Object(
  {
    ...clientProperties,
    client_secret: Type.Optional(
      Type.String({ description: 'Confidential clients only. Shown this once: Gatehouse keeps only its SHA-256' }),
    ),
    client_secret_expires_at: Type.Optional(
      Type.Integer({ description: 'Confidential clients only; 0: the secret does not expire' }),
    ),
  },
  { description: 'RFC 7591 §3.2.1 client information response' },
);

const ClientPage = Type.Object({
  items: Type.Array(Client),
  next_cursor: Type.Union([Type.String(), Type.Null()], {
    description: 'Pass as `cursor` to get the next page; null on the last page',
  }),
});

const ClientIdParams = Type.Object({ client_id: Type.String({ description: 'client_id of the registration' }) });

const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];
const tags = ['administration'];

/** `/admin/clients…`: the OpenID Connect relying parties. Superusers only (401 without a token, 403 for anyone else). */
export const oauthClientRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.addHook('preHandler', requireSuperuser);

  app.post(
    '/admin/clients',
    {
      // Bad metadata of any kind, wrong types included, is one 422 with the RFC 7591 `error` code, from the flow.
      attachValidation: true,
      schema: {
        tags,
        summary: 'Register an OpenID Connect client',
        description:
          'Takes RFC 7591 client metadata. A confidential client gets a `client_secret`, shown in this answer only. Bad metadata answers 422 VALIDATION_ERROR with `error` `invalid_redirect_uri` or `invalid_client_metadata` (RFC 7591 §3.2.2). Audited as `oauth_client_created`.',
        security,
        body: ClientMetadata,
        response: { 201: ClientRegistration, ...problems(400, 401, 403, 413, 415, 422) },
      },
    },
    async (request, reply) => {
      const registration = await createClient(app.gatehouse, request.body, request.caller, request.auth.userId);
      return reply.code(201).header('cache-control', 'no-store').send(registration);
    },
  );

  app.get(
    '/admin/clients',
    {
      schema: {
        tags,
        summary: 'List OpenID Connect clients',
        description: 'Newest first, without secrets. Cursor pagination.',
        security,
        querystring: Type.Object({
          cursor: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor of the previous page' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 50 })),
        }),
        response: { 200: ClientPage, ...problems(400, 401, 403, 422) },
      },
    },
    async (request) => listClients(app.gatehouse, request.query),
  );

  app.get(
    '/admin/clients/:client_id',
    {
      schema: {
        tags,
        summary: 'Show an OpenID Connect client',
        description: 'Without its secret, which is never shown again.',
        security,
        params: ClientIdParams,
        response: { 200: Client, ...problems(401, 403, 404) },
      },
    },
    async (request) => getClient(app.gatehouse, request.params.client_id),
  );

  app.delete(
    '/admin/clients/:client_id',
    {
      schema: {
        tags,
        summary: 'Delete an OpenID Connect client',
        description:
          'Removes the client with its authorization codes, grants and tokens, and revokes the sessions of those tokens at once. Audited as `oauth_client_deleted`.',
        security,
        params: ClientIdParams,
        response: { 204: Type.Null(), ...problems(401, 403, 404) },
      },
    },
    async (request, reply) => {
      await deleteClient(app.gatehouse, request.params.client_id, request.caller, request.auth.userId);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/admin/clients/:client_id/rotate-secret',
    {
      schema: {
        tags,
        summary: "Replace a confidential client's secret",
        description:
          'The new `client_secret` is in this answer only; the old one stops working at once. A public client has no secret (409 CONFLICT). Audited as `oauth_client_secret_rotated`.',
        security,
        params: ClientIdParams,
        response: { 200: ClientRegistration, ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const registration = await rotateClientSecret(
        app.gatehouse,
        request.params.client_id,
        request.caller,
        request.auth.userId,
      );
      return reply.header('cache-control', 'no-store').send(registration);
    },
  );
};
