import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Config } from '../config.ts';
import { AppError, type AppErrorOptions } from '../domain/errors.ts';
import type { IssuedSession } from '../infra/sessions.ts';
import { sendProblem, toAppError } from './problem.ts';

/** Name of the optional httpOnly refresh cookie (REFRESH_TOKEN_COOKIE=true). */
const REFRESH_COOKIE = 'gatehouse_refresh_token';

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  refresh_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Seconds until the access token expires' }),
  refresh_expires_in: Type.Integer({ description: 'Seconds until the refresh token expires' }),
});

/** The cookie is scoped to the refresh route, so no other request ever carries it. */
function refreshCookiePath(prefix: string): string {
  return `${prefix}/refresh`;
}

/** RFC 6749 §5.1: the token body, never cached. */
export function sendTokens(reply: FastifyReply, issued: IssuedSession, config: Config, prefix: string): FastifyReply {
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
  if (config.refreshTokenCookie) {
    reply.header(
      'set-cookie',
      stringifySetCookie({
        name: REFRESH_COOKIE,
        value: issued.tokens.refresh_token,
        httpOnly: true,
        secure: config.publicUrl.startsWith('https:'),
        sameSite: 'strict',
        path: refreshCookiePath(prefix),
        maxAge: issued.tokens.refresh_expires_in,
      }),
    );
  }
  return reply.code(200).send(issued.tokens);
}

export function clearRefreshCookie(reply: FastifyReply, config: Config, prefix: string): void {
  if (!config.refreshTokenCookie) return;
  reply.header(
    'set-cookie',
    stringifySetCookie({
      name: REFRESH_COOKIE,
      value: '',
      httpOnly: true,
      secure: config.publicUrl.startsWith('https:'),
      sameSite: 'strict',
      path: refreshCookiePath(prefix),
      maxAge: 0,
    }),
  );
}

export function refreshCookie(request: FastifyRequest): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string') return undefined;
  const value = parseCookie(header)[REFRESH_COOKIE];
  return value === '' ? undefined : value;
}

type OAuthError = NonNullable<AppErrorOptions['oauthError']>;

function oauthErrorFor(status: number): OAuthError | undefined {
  if (status === 401 || status === 403 || status === 423) return 'invalid_grant';
  if (status >= 400 && status < 500 && status !== 404 && status !== 429) return 'invalid_request';
  return undefined;
}

/**
 * Error handler of the token endpoints: the problem+json body also carries
 * RFC 6749's `error`, whatever failed (parsing, validation, the flow itself),
 * and every 401 carries the challenge RFC 7235 requires of it.
 */
export function oauthErrorHandler(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const appError = toAppError(error);
  if (appError.status >= 500) return sendProblem(request, reply, error);
  const oauthError = appError.options.oauthError ?? oauthErrorFor(appError.status);
  if (!oauthError) return sendProblem(request, reply, appError);
  const headers = { ...appError.options.headers };
  if (appError.status === 401) headers['www-authenticate'] ??= challengeFor(appError.code);
  return sendProblem(
    request,
    reply,
    new AppError(appError.code, { ...appError.options, detail: appError.detail, oauthError, headers }),
  );
}

function challengeFor(code: string): string {
  return code === 'INVALID_CREDENTIALS' ? 'Bearer' : 'Bearer error="invalid_token"';
}
