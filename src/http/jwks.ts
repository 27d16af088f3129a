import type { FastifyPluginAsync } from 'fastify';

/** `GET /.well-known/jwks.json`: the public keys that verify Gatehouse tokens (empty with HS256). */
export const jwksRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['tokens'],
        summary: 'JSON Web Key Set',
        description:
          'Public keys for EdDSA/ES256/RS256 tokens, each with its `kid`; rotated-out keys stay listed until their tokens expire.',
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'public, max-age=300');
      return app.gatehouse.tokens.jwks();
    },
  );
};
