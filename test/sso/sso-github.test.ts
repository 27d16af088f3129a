import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createAccount } from '../api/auth-helpers.ts';
import { startApp, uniqueName } from '../helpers.ts';
import { GithubServer } from '../support/github-server.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { freePort } from '../support/ports.ts';

describe('sign-in with GitHub (a local server speaking its OAuth and REST wire format)', () => {
  let app: FastifyInstance;
  let base: string;
  let github: GithubServer;
  const secret = randomBytes(20).toString('hex');

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    github = await GithubServer.start({ clients: { 'gh-client': secret }, apiPath: '/api/v3' });
    app = await startApp({
      PUBLIC_URL: base,
      REDIS_KEY_PREFIX: `t:${uniqueName('ssogh')}:`,
      SSO_PROVIDERS: 'github',
      SSO_GITHUB_CLIENT_ID: 'gh-client',
      SSO_GITHUB_CLIENT_SECRET: secret,
      SSO_GITHUB_URL: github.url,
      SSO_GITHUB_API_URL: github.apiUrl,
    });
    await app.listen({ host: '127.0.0.1', port });
  });
  after(async () => {
    await app?.close();
    await github?.close();
  });

  /** Starts at Gatehouse, approves at GitHub as `login`, and returns Gatehouse's answer to the callback. */
  async function signIn(browser: HttpBrowser, login: string): Promise<Response> {
    github.nextLogin = login;
    const start = await browser.get(`${base}/api/v1/sso/github/start`);
    assert.equal(start.status, 302, await start.text());
    const authorize = String(start.headers.get('location'));
    assert.ok(authorize.startsWith(`${github.url}/login/oauth/authorize?`), authorize);
    assert.equal(new URL(authorize).searchParams.get('code_challenge_method'), 'S256');
    const approved = await browser.get(authorize);
    assert.equal(approved.status, 302);
    const callback = String(approved.headers.get('location'));
    assert.ok(callback.startsWith(`${base}/api/v1/sso/github/callback?`), callback);
    return browser.get(callback);
  }

  async function userByEmail(email: string) {
    return app.gatehouse.db.selectFrom('users').selectAll().where('email', '=', email).executeTakeFirst();
  }

  async function refusals(reason: string): Promise<number> {
    const rows = await app.gatehouse.db
      .selectFrom('audit_logs')
      .select('details')
      .where('action', '=', 'sso_refused')
      .execute();
    return rows.filter((r) => JSON.stringify(r.details).includes(reason)).length;
  }

  test('a new person: the account from the verified primary address, the numeric id as the subject', async () => {
    const login = uniqueName('octo');
    const primary = `${login}@example.com`;
    const user = github.addUser(
      login,
      [
        { email: `${login}@old.example.org`, primary: false, verified: true, visibility: null },
        { email: primary.toUpperCase(), primary: true, verified: true, visibility: 'private' },
      ],
      'Mona Octocat',
    );
    const browser = new HttpBrowser();
    const back = await signIn(browser, login);
    assert.equal(back.status, 303, await back.text());
    assert.equal(back.headers.get('location'), '/account');
    const page = await browser.get(`${base}/account`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), new RegExp(primary));

    const account = await userByEmail(primary);
    assert.ok(account);
    assert.equal(account.has_password, false);
    assert.ok(account.email_verified_at);
    assert.equal(account.name, 'Mona Octocat');
    const identity = await app.gatehouse.db
      .selectFrom('user_identities')
      .selectAll()
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual([identity.provider, identity.subject, identity.email], ['github', String(user.id), primary]);
    assert.ok(github.challenges.at(-1));

    // Again, with another primary address: the same account, found by the id.
    user.emails = [{ email: `${login}@new.example.com`, primary: true, verified: true, visibility: 'private' }];
    const again = await signIn(new HttpBrowser(), login);
    assert.equal(again.status, 303, await again.text());
    assert.equal(await userByEmail(`${login}@new.example.com`), undefined);
    const identities = await app.gatehouse.db
      .selectFrom('user_identities')
      .select('user_id')
      .where('provider', '=', 'github')
      .where('subject', '=', String(user.id))
      .execute();
    assert.deepEqual(
      identities.map((i) => i.user_id),
      [account.id],
    );
  });

  test('an unverified primary address: an account whose address is unverified', async () => {
    const login = uniqueName('octo');
    const primary = `${login}@example.com`;
    github.addUser(login, [
      { email: `${login}@verified.example.org`, primary: false, verified: true, visibility: null },
      { email: primary, primary: true, verified: false, visibility: 'private' },
    ]);
    const back = await signIn(new HttpBrowser(), login);
    assert.equal(back.status, 303, await back.text());
    const account = await userByEmail(primary);
    assert.ok(account, 'made from the primary address, not the verified secondary one');
    assert.equal(account.email_verified_at, null);
    assert.equal(await userByEmail(`${login}@verified.example.org`), undefined);
    const identity = await app.gatehouse.db
      .selectFrom('user_identities')
      .select('email_verified')
      .where('user_id', '=', account.id)
      .executeTakeFirstOrThrow();
    assert.equal(identity.email_verified, false);
  });

  test('an unverified primary address that an account already has: 409 SSO_ACCOUNT_EXISTS, nothing linked', async () => {
    const existing = await createAccount(app);
    const login = uniqueName('octo');
    github.addUser(login, [{ email: existing.email, primary: true, verified: false, visibility: 'private' }]);
    const before = await refusals('email_belongs_to_account');
    const back = await signIn(new HttpBrowser(), login);
    assert.equal(back.status, 409);
    const problem = (await back.json()) as { code: string };
    assert.equal(problem.code, 'SSO_ACCOUNT_EXISTS');
    const linked = await app.gatehouse.db
      .selectFrom('user_identities')
      .select('id')
      .where('user_id', '=', existing.id)
      .execute();
    assert.equal(linked.length, 0);
    assert.equal(await refusals('email_belongs_to_account'), before + 1);
  });

  test('a browser refused is sent to the login page with the message', async () => {
    const existing = await createAccount(app);
    const login = uniqueName('octo');
    github.addUser(login, [{ email: existing.email, primary: true, verified: false, visibility: 'private' }]);
    github.nextLogin = login;
    const browser = new HttpBrowser();
    const start = await browser.get(`${base}/api/v1/sso/github/start`);
    const approved = await browser.get(String(start.headers.get('location')));
    const back = await fetch(String(approved.headers.get('location')), {
      redirect: 'manual',
      headers: { accept: 'text/html', cookie: `gatehouse-sso=${browser.cookie(base, 'gatehouse-sso')}` },
    });
    assert.equal(back.status, 303);
    assert.equal(back.headers.get('location'), '/login?sso_error=SSO_ACCOUNT_EXISTS');
    const page = await browser.get(`${base}/login?sso_error=SSO_ACCOUNT_EXISTS`);
    assert.equal(page.status, 409);
    assert.match(await page.text(), /An account with this e-mail address exists/);
  });

  for (const mode of ['down', 'garbage'] as const) {
    test(`the API ${mode}: 502 SSO_UNAVAILABLE and no account`, async () => {
      const login = uniqueName('octo');
      const primary = `${login}@example.com`;
      github.addUser(login, [{ email: primary, primary: true, verified: true, visibility: 'private' }]);
      github.apiMode = mode;
      try {
        const back = await signIn(new HttpBrowser(), login);
        assert.equal(back.status, 502);
        const problem = (await back.json()) as { code: string };
        assert.equal(problem.code, 'SSO_UNAVAILABLE');
      } finally {
        github.apiMode = 'ok';
      }
      assert.equal(await userByEmail(primary), undefined);
      assert.ok((await refusals('provider_unavailable')) >= 1);
    });
  }

  test('a code exchanged with the wrong PKCE verifier is refused (bad_verification_code): 401, no account', async () => {
    const login = uniqueName('octo');
    const primary = `${login}@example.com`;
    github.addUser(login, [{ email: primary, primary: true, verified: true, visibility: 'private' }]);
    github.nextLogin = login;
    const browser = new HttpBrowser();
    const start = await browser.get(`${base}/api/v1/sso/github/start`);
    const authorize = new URL(String(start.headers.get('location')));
    // Another challenge than Gatehouse's: its verifier cannot match.
    authorize.searchParams.set('code_challenge', randomBytes(32).toString('base64url'));
    const approved = await browser.get(authorize.href);
    const back = await browser.get(String(approved.headers.get('location')));
    assert.equal(back.status, 401, await back.clone().text());
    assert.equal(((await back.json()) as { code: string }).code, 'SSO_FAILED');
    assert.equal(await userByEmail(primary), undefined);
  });
});
