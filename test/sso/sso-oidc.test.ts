import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { startApp, uniqueName } from '../helpers.ts';
import { HttpBrowser } from '../support/http-browser.ts';
import { freePort } from '../support/ports.ts';
import { UpstreamIdp } from '../support/upstream-idp.ts';

describe('sign-in with an OpenID Connect provider (a real oidc-provider as the issuer)', () => {
  let app: FastifyInstance;
  let base: string;
  let idp: UpstreamIdp;
  const secret = randomBytes(24).toString('base64url');

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    idp = await UpstreamIdp.start({
      clients: [{ client_id: 'gatehouse', client_secret: secret, redirect_uris: [`${base}/api/v1/sso/acme/callback`] }],
    });
    app = await startApp({
      PUBLIC_URL: base,
      REDIS_KEY_PREFIX: `t:${uniqueName('sso')}:`,
      SSO_PROVIDERS: 'acme',
      SSO_ACME_CLIENT_ID: 'gatehouse',
      SSO_ACME_CLIENT_SECRET: secret,
      SSO_ACME_ISSUER: idp.issuer,
      SSO_ACME_LABEL: 'Continue with Acme',
    });
    await app.listen({ host: '127.0.0.1', port });
  });
  after(async () => {
    await app?.close();
    await idp?.close();
  });

  async function audit(action: string): Promise<number> {
    const rows = await app.gatehouse.db.selectFrom('audit_logs').select('id').where('action', '=', action).execute();
    return rows.length;
  }

  test('a new person: an account made from the provider, signed in on the pages, amr fed', async () => {
    const login = uniqueName('alice');
    idp.accounts[login] = { email: `${login}@example.com`, email_verified: true, name: 'Alice Liddell' };
    const browser = new HttpBrowser();
    const loginPage = await browser.open(`${base}/login`);
    assert.match(loginPage.body, /Continue with Acme/);
    const start = await browser.get(`${base}/api/v1/sso/acme/start?redirect_to=/account`);
    assert.equal(start.status, 302);
    const at = await browser.open(String(start.headers.get('location')));
    const back = await idp.signIn(browser, at, login, `${base}/account`);
    assert.equal(back.url, `${base}/account`);
    const account = await browser.get(`${base}/account`);
    assert.equal(account.status, 200);
    assert.match(await account.text(), new RegExp(`${login}@example.com`));

    const user = await app.gatehouse.db
      .selectFrom('users')
      .selectAll()
      .where('email', '=', `${login}@example.com`)
      .executeTakeFirstOrThrow();
    assert.equal(user.has_password, false);
    assert.ok(user.email_verified_at);
    assert.equal(user.name, 'Alice Liddell');
    const identity = await app.gatehouse.db
      .selectFrom('user_identities')
      .selectAll()
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual([identity.provider, identity.subject], ['acme', login]);
    const session = await app.gatehouse.db
      .selectFrom('sessions')
      .select(['amr', 'kind'])
      .where('user_id', '=', user.id)
      .executeTakeFirstOrThrow();
    assert.deepEqual([session.kind, session.amr], ['browser', 'fed']);
    assert.ok((await audit('sso_account_created')) >= 1);
    assert.ok((await audit('sso_login')) >= 1);

    // A second sign-in finds the same account by (provider, subject).
    const again = new HttpBrowser();
    const start2 = await again.get(`${base}/api/v1/sso/acme/start`);
    const at2 = await again.open(String(start2.headers.get('location')));
    const back2 = await idp.signIn(again, at2, login, `${base}/account`);
    assert.equal(back2.url, `${base}/account`);
    const count = await app.gatehouse.db
      .selectFrom('users')
      .select('id')
      .where('email', '=', `${login}@example.com`)
      .execute();
    assert.equal(count.length, 1);
  });
});
