import type { FastifyRequest } from 'fastify';

/** The account a successful password login signed in, for an answer that names it (a COMPAT alias). */
export const signedInUserId = new WeakMap<FastifyRequest, number>();
