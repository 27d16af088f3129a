import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';

/** A cookie jar over app.inject: what a browser keeps between page loads. */
export class Browser {
  readonly cookies = new Map<string, string>();
  readonly #app: FastifyInstance;
  /** Sent with every request (a User-Agent, say). */
  readonly #headers: Record<string, string>;

  constructor(app: FastifyInstance, headers: Record<string, string> = {}) {
    this.#app = app;
    this.#headers = headers;
  }

  get(url: string, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
    return this.#send({ method: 'GET', url, headers });
  }

  /** Posts the fields as a form, with this browser's cookies. */
  post(
    url: string,
    fields: Record<string, string>,
    headers: Record<string, string> = {},
  ): Promise<LightMyRequestResponse> {
    return this.#send({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      payload: new URLSearchParams(fields).toString(),
    });
  }

  /** Loads the form on `from` (by default `url`), then posts the fields with its CSRF token. */
  async submit(url: string, fields: Record<string, string>, from = url): Promise<LightMyRequestResponse> {
    return this.post(url, { csrf_token: await this.csrfToken(from), ...fields });
  }

  /** The CSRF token of the form on `page`, loaded now with this browser's cookies. */
  async csrfToken(page: string): Promise<string> {
    return csrfTokenOf((await this.get(page)).body);
  }

  async #send(options: {
    method: 'GET' | 'POST';
    url: string;
    headers: Record<string, string>;
    payload?: string;
  }): Promise<LightMyRequestResponse> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await this.#app.inject({
      ...options,
      headers: { ...this.#headers, ...options.headers, ...(cookie && { cookie }) },
    });
    for (const line of setCookies(res)) {
      const [name, value] = (line.split(';')[0] as string).split('=') as [string, string];
      if (/max-age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }
}

/** Every Set-Cookie line of an answer. */
export function setCookies(res: LightMyRequestResponse): string[] {
  const header = res.headers['set-cookie'];
  return header === undefined ? [] : [header].flat().map(String);
}

export function csrfTokenOf(html: string): string {
  const match = /name="csrf_token" value="([^"]+)"/.exec(html);
  assert.ok(match, 'the page has a form with a CSRF token');
  return match[1] as string;
}

/** Logs in through the login page: the browser then holds a session cookie. */
export async function pageLogIn(browser: Browser, username: string, password: string): Promise<LightMyRequestResponse> {
  const res = await browser.post('/login', { csrf_token: await browser.csrfToken('/login'), username, password });
  assert.equal(res.statusCode, 303, res.body);
  return res;
}
