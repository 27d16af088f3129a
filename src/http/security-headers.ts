import type { FastifyInstance, FastifyReply } from 'fastify';

/** An HTML answer that brings no policy of its own (a problem page): it loads nothing and nothing frames it. */
const STRICT_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The one inline `<style>` Swagger UI renders: the colours of its logo (an SVG in swagger-ui-bundle.js). */
const SWAGGER_LOGO_STYLE = "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='";

/**
 * `/docs` (Swagger UI): its own scripts, styles and images, `data:` fonts and
 * icons from its stylesheet, and calls to this API from "Try it out" and the
 * Authorize dialog. No inline script; no inline style but its logo's, by hash.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "base-uri 'none'",
  "connect-src 'self'",
  "font-src 'self' data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "img-src 'self' data:",
  "object-src 'none'",
  "script-src 'self'",
  `style-src 'self' ${SWAGGER_LOGO_STYLE}`,
].join('; ');

/** Every answer of the scope: never content-sniffed; HTML is never framed and hands on no Referer. */
export function securityHeaders(scope: FastifyInstance): void {
  scope.addHook('onRequest', async (_request, reply) => {
    noSniff(reply);
  });
  scope.addHook('onSend', async (_request, reply, payload) => {
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('text/html')) {
      if (!reply.hasHeader('content-security-policy')) reply.header('content-security-policy', STRICT_CSP);
      reply.header('x-frame-options', 'DENY');
      if (!reply.hasHeader('referrer-policy')) reply.header('referrer-policy', 'no-referrer');
    }
    return payload;
  });
}

/** Also set by the problem mapper, for answers given before any hook runs (a malformed URL, a 404). */
export function noSniff(reply: FastifyReply): void {
  reply.header('x-content-type-options', 'nosniff');
}
