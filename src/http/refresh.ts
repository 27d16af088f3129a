import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { AppError } from '../domain/errors.ts';
import { rotateRefreshToken } from '../flows/refresh.ts';
import { problems } from './schemas.ts';
import { oauthErrorHandler, refreshCookie, sendTokens, TokenResponse } from './token-response.ts';

const RefreshBody = Type.Object(
  {
    refresh_token: Type.Optional(Type.String({ description: 'Omit to use the refresh cookie' })),
    grant_type: Type.Optional(Type.String({ description: '`refresh_token` when sent as a form' })),
  },
  { additionalProperties: true },
);

export const refreshRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.post(
    '/refresh',
    {
      config: { rateLimit: 'refresh' },
      errorHandler: oauthErrorHandler,
      // No body at all is fine: the token may come from the cookie.
      preValidation: async (request) => {
        request.body ??= {};
      },
      schema: {
        tags: ['tokens'],
        summary: 'Exchange a refresh token for a new pair',
        description:
          'Rotates: the presented refresh token is spent. Presented again within REFRESH_REUSE_INTERVAL_SECONDS it ' +
          "returns the session's current successor; later, it revokes the session (401 REFRESH_TOKEN_REUSED). " +
          'The token comes from the JSON or form body (`grant_type=refresh_token`), or the refresh cookie.',
        consumes: ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'],
        body: RefreshBody,
        response: { 200: TokenResponse, ...problems(400, 401, 403, 413, 415, 422, 429, 503) },
      },
    },
    async (request, reply) => {
      const body = request.body;
      if (body.grant_type !== undefined && body.grant_type !== 'refresh_token') {
        throw new AppError('MALFORMED_REQUEST', {
          detail: 'grant_type must be refresh_token',
          oauthError: 'unsupported_grant_type',
        });
      }
      const token = body.refresh_token || refreshCookie(request);
      if (!token) {
        throw new AppError('VALIDATION_ERROR', {
          detail: 'One or more fields are invalid',
          errors: [{ field: 'refresh_token', message: 'Field is required', code: 'required' }],
        });
      }
      const issued = await rotateRefreshToken(app.gatehouse, token, request.caller);
      return sendTokens(reply, issued, app.gatehouse.config, app.prefix);
    },
  );
};
