import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';

/** The Set-Cookie headers of a response. */
export function setCookies(res: LightMyRequestResponse): string[] {
  const header = res.headers['set-cookie'];
  return header === undefined ? [] : [header].flat().map(String);
}

/**
 * Opens a page form as a browser would (its CSRF cookie and token), so that a
 * test can then post it with the headers it chooses.
 */
export async function openForm(
  app: FastifyInstance,
  url: string,
): Promise<{ cookie: string; csrfToken: string; post: PostForm }> {
  const page = await app.inject({ url });
  assert.equal(page.statusCode, 200, page.body.slice(0, 500));
  const cookie = setCookies(page)
    .map((header) => header.split(';')[0])
    .join('; ');
  const token = /name="csrf_token" value="([^"]+)"/.exec(page.body)?.[1];
  assert.ok(token, `${url} has a form with a CSRF token`);
  const post: PostForm = (fields, headers = {}, to = url.split('?')[0] as string) =>
    app.inject({
      method: 'POST',
      url: to,
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, ...headers },
      payload: new URLSearchParams({ csrf_token: token, ...fields }).toString(),
    });
  return { cookie, csrfToken: token, post };
}

type PostForm = (
  fields: Record<string, string>,
  headers?: Record<string, string>,
  to?: string,
) => Promise<LightMyRequestResponse>;
