import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { mfaWebauthnOptions } from '../flows/login-mfa.ts';
import {
  finishPasskeyLogin,
  finishPasskeyRegistration,
  listPasskeys,
  removePasskey,
  renamePasskey,
  startPasskeyLogin,
  startPasskeyRegistration,
} from '../flows/passkeys.ts';
import { requireUser } from './auth-guard.ts';
import { setDeviceCookie, trustedDevice } from './device-cookie.ts';
import { signedInUserId } from './login-user.ts';
import { problems } from './schemas.ts';
import { oauthErrorHandler, sendTokens, TokenResponse } from './token-response.ts';

const security: Record<string, string[]>[] = [{ bearer: [] }, { oauth2: [] }];
const tags = ['passkeys'];

const b64url = (maxLength: number, description?: string) =>
  Type.String({ maxLength, ...(description && { description }) });

/** `RegistrationResponseJSON`, as `startRegistration()` of @simplewebauthn/browser answers. */
const RegistrationResponse = Type.Object(
  {
    id: b64url(1400),
    rawId: b64url(1400),
    type: Type.String({ maxLength: 32 }),
    response: Type.Object(
      {
        clientDataJSON: b64url(8192),
        attestationObject: b64url(16384),
        transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 16 })),
      },
      { additionalProperties: true },
    ),
    clientExtensionResults: Type.Optional(Type.Object({}, { additionalProperties: true })),
    authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { additionalProperties: true, description: 'The RegistrationResponseJSON of navigator.credentials.create()' },
);

/** `AuthenticationResponseJSON`, as `startAuthentication()` answers. */
const AuthenticationResponse = Type.Object(
  {
    id: b64url(1400),
    rawId: b64url(1400),
    type: Type.String({ maxLength: 32 }),
    response: Type.Object(
      {
        clientDataJSON: b64url(8192),
        authenticatorData: b64url(8192),
        signature: b64url(2048),
        userHandle: Type.Optional(b64url(1024)),
      },
      { additionalProperties: true },
    ),
    clientExtensionResults: Type.Optional(Type.Object({}, { additionalProperties: true })),
    authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { additionalProperties: true, description: 'The AuthenticationResponseJSON of navigator.credentials.get()' },
);

const CreationOptions = Type.Object(
  {
    challenge: Type.String(),
    rp: Type.Object({ id: Type.Optional(Type.String()), name: Type.String() }),
    user: Type.Object({ id: Type.String(), name: Type.String(), displayName: Type.String() }),
    pubKeyCredParams: Type.Array(Type.Object({ alg: Type.Integer(), type: Type.String() })),
    timeout: Type.Optional(Type.Integer()),
    excludeCredentials: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
    authenticatorSelection: Type.Optional(Type.Object({}, { additionalProperties: true })),
    attestation: Type.Optional(Type.String()),
    extensions: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: true, description: 'PublicKeyCredentialCreationOptionsJSON' },
);

const RequestOptionsFields = {
  challenge: Type.String(),
  rpId: Type.Optional(Type.String()),
  timeout: Type.Optional(Type.Integer()),
  allowCredentials: Type.Optional(Type.Array(Type.Object({}, { additionalProperties: true }))),
  userVerification: Type.Optional(Type.String()),
  extensions: Type.Optional(Type.Object({}, { additionalProperties: true })),
};

const RequestOptions = Type.Object(RequestOptionsFields, {
  additionalProperties: true,
  description: 'PublicKeyCredentialRequestOptionsJSON',
});

const LoginOptions = Type.Object(
  {
    ...RequestOptionsFields,
    challenge_id: Type.String({
      format: 'uuid',
      description: 'Send it back with the response to POST /login/passkey/verify',
    }),
  },
  { additionalProperties: true, description: 'PublicKeyCredentialRequestOptionsJSON and its challenge_id' },
);

const Passkey = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  device_type: Type.String({ description: '`singleDevice`, or `multiDevice` (synced)' }),
  backed_up: Type.Boolean(),
});

const Name = Type.String({ maxLength: 400, description: '1 to 100 characters' });
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

/** `/passkeys/*` (the signed-in user's passkeys) and `/login/passkey/*`, `/login/mfa/webauthn-options`. */
export const passkeyRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const services = app.gatehouse;
  const { config } = services;
  const apiPrefix = app.prefix;

  app.post(
    '/passkeys/register/options',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Start adding a passkey',
        description:
          'PublicKeyCredentialCreationOptionsJSON for navigator.credentials.create() (resident key and user verification preferred, the existing passkeys excluded). The challenge is good once, for 5 minutes. The session must be recently authenticated (its login, or POST /reauthenticate, within REAUTHENTICATION_WINDOW_SECONDS): otherwise 403 REAUTHENTICATION_REQUIRED.',
        security,
        response: { 200: CreationOptions, ...problems(401, 403, 429) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return startPasskeyRegistration(services, request.auth);
    },
  );

  app.post(
    '/passkeys/register/verify',
    {
      onRequest: requireUser,
      config: { rateLimit: 'reauthenticate' },
      schema: {
        tags,
        summary: 'Finish adding a passkey',
        description:
          '`{"response", "name"?}`: the RegistrationResponseJSON of the browser for the options of POST /passkeys/register/options. `201` with the passkey; audited (`passkey_added`) and mailed. A response that does not verify (wrong origin or RP id, bad attestation) is 401 PASSKEY_INVALID; an unknown, used or expired challenge 401 CHALLENGE_INVALID; a passkey already registered 409.',
        security,
        body: Type.Object(
          { response: RegistrationResponse, name: Type.Optional(Name) },
          { additionalProperties: true },
        ),
        response: { 201: Passkey, ...problems(400, 401, 403, 409, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      const passkey = await finishPasskeyRegistration(services, request.auth, request.body, request.caller);
      return reply.code(201).send(passkey);
    },
  );

  app.get(
    '/passkeys',
    {
      onRequest: requireUser,
      schema: {
        tags,
        summary: "The signed-in user's passkeys",
        security,
        response: {
          200: Type.Object({ items: Type.Array(Passkey), next_cursor: Type.Null() }),
          ...problems(401, 403),
        },
      },
    },
    async (request) => ({ items: await listPasskeys(services, request.auth), next_cursor: null }),
  );

  app.patch(
    '/passkeys/:id',
    {
      onRequest: requireUser,
      schema: {
        tags,
        summary: 'Rename a passkey',
        security,
        params: IdParams,
        body: Type.Object({ name: Name }, { additionalProperties: true }),
        response: { 200: Passkey, ...problems(400, 401, 403, 404, 413, 415, 422) },
      },
    },
    async (request) => renamePasskey(services, request.auth, request.params.id, request.body, request.caller),
  );

  app.delete(
    '/passkeys/:id',
    {
      onRequest: requireUser,
      schema: {
        tags,
        summary: 'Remove a passkey',
        description:
          '`204`; audited (`passkey_removed`). 409 when it is the only way into the account (no password and no other passkey).',
        security,
        params: IdParams,
        response: { 204: Type.Null(), ...problems(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await removePasskey(services, request.auth, request.params.id, request.caller);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/login/passkey/options',
    {
      config: { rateLimit: 'login' },
      schema: {
        tags: ['tokens'],
        summary: 'Start a login with a passkey',
        description:
          "PublicKeyCredentialRequestOptionsJSON for navigator.credentials.get(), and its `challenge_id`. Without `username` the options list no credentials: the browser offers the passkeys it holds for this site (discoverable credentials). With `username`, `allowCredentials` lists that user's passkeys (an unknown name gets a stand-in, so the answer does not tell), and only they are accepted. User verification is required.",
        body: Type.Optional(
          Type.Object(
            { username: Type.Optional(Type.String({ maxLength: 320, description: 'Username or email (optional)' })) },
            { additionalProperties: true },
          ),
        ),
        response: { 200: LoginOptions, ...problems(400, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return startPasskeyLogin(services, request.body ?? {});
    },
  );

  app.post(
    '/login/passkey/verify',
    {
      config: { rateLimit: 'login' },
      errorHandler: oauthErrorHandler,
      schema: {
        tags: ['tokens'],
        summary: 'Log in with a passkey',
        description:
          '`{"challenge_id", "response"}` → the login body; the access token carries `amr: ["webauthn"]`. The challenge is spent by the first answer, right or wrong. Refusals, each audited (`passkey_refused`): 401 CHALLENGE_INVALID (unknown, used or expired challenge, or a response for another one), 401 PASSKEY_INVALID (unknown credential, another user\'s, wrong origin or RP id, bad signature, no user verification), 401 PASSKEY_COUNTER_REGRESSION (the signature counter went back: a cloned authenticator), 403 ACCOUNT_DISABLED, 403 EMAIL_NOT_VERIFIED.',
        body: Type.Object(
          {
            challenge_id: Type.String({ maxLength: 64, description: 'From POST /login/passkey/options' }),
            response: AuthenticationResponse,
          },
          { additionalProperties: true },
        ),
        response: { 200: TokenResponse, ...problems(400, 401, 403, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      const { clock } = services;
      const issued = await finishPasskeyLogin(services, request.body, request.caller, 'api');
      setDeviceCookie(reply, config, clock.now(), trustedDevice(request, config, clock.now()), issued.userId);
      signedInUserId.set(request, issued.userId);
      return sendTokens(reply, issued, config, apiPrefix);
    },
  );

  app.post(
    '/login/mfa/webauthn-options',
    {
      config: { rateLimit: 'login' },
      schema: {
        tags: ['tokens'],
        summary: 'Passkey options for the second step of a login',
        description:
          "For an `mfa_token` whose MFA_REQUIRED answer listed `webauthn` in `methods`: PublicKeyCredentialRequestOptionsJSON listing the user's passkeys. Send the browser's answer as `webauthn_response` with the `mfa_token` to POST /login/mfa. 401 TOKEN_INVALID for a spent, expired or unknown token; 409 when the account has no passkey.",
        body: Type.Object(
          {
            mfa_token: Type.String({ maxLength: 128, description: 'From the 403 MFA_REQUIRED answer of POST /login' }),
          },
          { additionalProperties: true },
        ),
        response: { 200: RequestOptions, ...problems(400, 401, 409, 413, 415, 422, 429) },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      return mfaWebauthnOptions(services, request.body);
    },
  );
};
