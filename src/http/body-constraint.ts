import type { FastifyInstance } from 'fastify';

/**
 * A route constraint on a POST's body, decided from its headers: `json` for an
 * `application/json` body; `form` for a form body (urlencoded or multipart)
 * sent by a program rather than a browser: without an `Origin` or
 * `Sec-Fetch-Site` header (browsers send them with every form POST) and
 * without the pages' CSRF cookie. A request whose kind no route of its path is
 * constrained to falls back to the unconstrained route (the page).
 */
export const BODY_CONSTRAINT = 'gatehouseBody';
export type BodyKind = 'json' | 'form';

/** The media type without parameters (`; charset=utf-8`), lower-cased. */
function mediaType(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  return (contentType.split(';')[0] as string).trim().toLowerCase();
}

function bodyKind(method: string, headers: Record<string, string | string[] | undefined>): BodyKind | undefined {
  if (method !== 'POST') return undefined;
  const type = mediaType(headers['content-type'] as string | undefined);
  if (type === 'application/json') return 'json';
  if (type !== 'application/x-www-form-urlencoded' && type !== 'multipart/form-data') return undefined;
  // A browser sends Origin with every form POST: those go to the page and its CSRF checks.
  if (headers.origin !== undefined || headers['sec-fetch-site'] !== undefined) return undefined;
  const cookie = headers.cookie;
  // `gatehouse-csrf` and `__Host-gatehouse-csrf` alike.
  return typeof cookie === 'string' && cookie.includes('gatehouse-csrf=') ? undefined : 'form';
}

export function addBodyConstraint(app: FastifyInstance): void {
  if (app.hasConstraintStrategy(BODY_CONSTRAINT)) return;
  app.addConstraintStrategy({
    name: BODY_CONSTRAINT,
    storage() {
      const handlers = new Map<unknown, unknown>();
      return {
        get: (value) => (handlers.get(value) ?? null) as never,
        set: (value, store) => void handlers.set(value, store),
      };
    },
    deriveConstraint: (req) => bodyKind(req.method ?? '', req.headers),
    mustMatchWhenDerived: false,
  });
}
