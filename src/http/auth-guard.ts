import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../domain/errors.ts';
import { assertSuperuser, authenticateAccessToken } from '../flows/authenticate.ts';
import type { AuthContext } from '../infra/sessions.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by `requireUser`: who holds the access token, and which session it belongs to. */
    auth: AuthContext;
  }
}

/** `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235). */
export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization;
  if (typeof header !== 'string' || header === '') {
    throw new AppError('UNAUTHORIZED', { detail: 'Missing bearer token' });
  }
  const match = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header);
  if (!match) throw new AppError('UNAUTHORIZED', { detail: 'Authorization header must be "Bearer <token>"' });
  return match[1] as string;
}

/**
 * preHandler for routes that need a signed-in user: verifies the access token
 * (algorithm pinned, `iss`, `aud`, `type=access`), checks that its session is
 * not revoked, and sets `request.auth`. Throws UNAUTHORIZED, TOKEN_EXPIRED or
 * TOKEN_INVALID.
 */
export async function requireUser(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
  request.auth = await authenticateAccessToken(request.server.gatehouse, bearerToken(request));
}

/** requireUser, and the user must be a superuser (FORBIDDEN otherwise). */
export async function requireSuperuser(request: FastifyRequest, reply: FastifyReply): Promise<void> {
  await requireUser(request, reply);
  await assertSuperuser(request.server.gatehouse, request.auth);
}
