import assert from 'node:assert/strict';

interface StoredCookie {
  value: string;
  path: string;
}

/**
 * A browser without a screen: a cookie jar per host (paths and deletion
 * honoured), redirects followed by hand so that a test sees each hop, and
 * forms read from the page as served.
 */
export class HttpBrowser {
  readonly #jar = new Map<string, Map<string, StoredCookie>>();

  async get(url: string): Promise<Response> {
    return this.#send(url, { method: 'GET' });
  }

  async post(url: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
    return this.#send(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(url).origin, ...headers },
      body: new URLSearchParams(fields).toString(),
    });
  }

  /** Follows redirects from `response` until one leaves for `stopAt` (not fetched) or a page answers. */
  async follow(response: Response, stopAt?: string): Promise<{ response: Response; url: string }> {
    let current = response;
    let url = current.url;
    for (let hops = 0; hops < 20; hops++) {
      const location = current.headers.get('location');
      if (current.status < 300 || current.status >= 400 || !location) return { response: current, url };
      url = new URL(location, url).href;
      if (stopAt && url.startsWith(stopAt)) return { response: current, url };
      current = await this.get(url);
    }
    throw new Error('too many redirects');
  }

  /** GET `url` and follow it. */
  async open(url: string, stopAt?: string): Promise<{ response: Response; url: string; body: string }> {
    const followed = await this.follow(await this.get(url), stopAt);
    const body = followed.response.status === 200 ? await followed.response.text() : '';
    return { ...followed, body };
  }

  cookie(url: string, name: string): string | undefined {
    return this.#jar.get(new URL(url).host)?.get(name)?.value;
  }

  forget(url: string, name: string): void {
    this.#jar.get(new URL(url).host)?.delete(name);
  }

  async #send(url: string, init: RequestInit): Promise<Response> {
    const target = new URL(url);
    const cookies = [...(this.#jar.get(target.host) ?? new Map<string, StoredCookie>()).entries()]
      .filter(([, c]) => target.pathname.startsWith(c.path))
      .map(([name, c]) => `${name}=${c.value}`)
      .join('; ');
    const response = await fetch(url, {
      ...init,
      redirect: 'manual',
      headers: { ...(init.headers as Record<string, string>), ...(cookies ? { cookie: cookies } : {}) },
    });
    Object.defineProperty(response, 'url', { value: url });
    for (const header of response.headers.getSetCookie()) this.#store(target.host, header);
    return response;
  }

  #store(host: string, header: string): void {
    const [pair = '', ...attributes] = header.split(';').map((part) => part.trim());
    const index = pair.indexOf('=');
    const name = pair.slice(0, index);
    const value = pair.slice(index + 1);
    const attribute = (key: string) =>
      attributes.find((a) => a.toLowerCase().startsWith(`${key}=`))?.slice(key.length + 1);
    const jar = this.#jar.get(host) ?? new Map<string, StoredCookie>();
    this.#jar.set(host, jar);
    const maxAge = attribute('max-age');
    const expires = attribute('expires');
    const expired =
      (maxAge !== undefined && Number(maxAge) <= 0) ||
      (expires !== undefined && new Date(expires).getTime() < Date.now()) ||
      value === '';
    if (expired) jar.delete(name);
    else jar.set(name, { value, path: attribute('path') ?? '/' });
  }
}

/** The hidden inputs and action of the first form in `html` holding `marker`. */
export function formIn(html: string, marker = 'csrf_token'): { action: string; fields: Record<string, string> } {
  const forms = html.match(/<form[\s\S]*?<\/form>/g) ?? [];
  const form = forms.find((f) => f.includes(marker));
  assert.ok(form, `a form with ${marker}`);
  const action = /action="([^"]*)"/.exec(form)?.[1] ?? '';
  const fields: Record<string, string> = {};
  for (const match of form.matchAll(/<input[^>]*type="hidden"[^>]*>/g)) {
    const name = /name="([^"]+)"/.exec(match[0])?.[1];
    const value = /value="([^"]*)"/.exec(match[0])?.[1];
    if (name) fields[name] = value ?? '';
  }
  return { action: action.replaceAll('&amp;', '&'), fields };
}

/** Signs `account` in on the `/login` page this browser was sent to, and follows on to `stopAt`. */
export async function signInOnPage(
  browser: HttpBrowser,
  page: { url: string; body: string },
  account: { username: string; password: string },
  stopAt: string,
): Promise<{ response: Response; url: string }> {
  assert.match(page.url, /\/login\?redirect_to=/, 'the authorization sends the browser to the login page');
  const form = formIn(page.body);
  const posted = await browser.post(new URL(form.action || '/login', page.url).href, {
    ...form.fields,
    username: account.username,
    password: account.password,
  });
  assert.equal(posted.status, 303, await posted.clone().text());
  return browser.follow(posted, stopAt);
}
