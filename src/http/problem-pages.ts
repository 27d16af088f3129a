import type { FastifyPluginAsync } from 'fastify';
import { PROBLEMS, type ProblemCode, problemType } from '../domain/errors.ts';
import { escapeHtml } from '../views/escape.ts';

const BY_TYPE = new Map<string, ProblemCode>(
  (Object.keys(PROBLEMS) as ProblemCode[]).map((code) => [problemType(code), code]),
);

/**
 * A problem text as HTML: everything escaped, and each `code` span (the
 * catalogue marks field names and headers with backticks) set in <code>.
 * A lone backtick stays a literal character.
 */
function inlineHtml(text: string): string {
  return text
    .split(/`([^`]+)`/)
    .map((part, i) => (i % 2 === 1 ? `<code>${escapeHtml(part)}</code>` : escapeHtml(part)))
    .join('');
}

/** Each problem `type` is a page that explains the problem and its fix. */
export const problemPages: FastifyPluginAsync = async (app) => {
  app.get<{ Params: { slug: string } }>('/problems/:slug', { schema: { hide: true } }, async (request, reply) => {
    const code = BY_TYPE.get(`/problems/${request.params.slug}`);
    if (!code) return reply.callNotFound();
    const p = PROBLEMS[code];
    return reply
      .type('text/html; charset=utf-8')
      .send(
        `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(p.title)}</title></head>` +
          `<body><h1>${escapeHtml(p.title)}</h1><p>HTTP status <strong>${p.status}</strong>, code <code>${code}</code>.</p>` +
          `<h2>How to fix it</h2><p>${inlineHtml(p.fix)}</p></body></html>`,
      );
  });
};
