/**
 * The attack: cross-site request forgery against the HTML pages. A page on
 * another site makes a signed-in (or anonymous) visitor's browser post one
 * of Gatehouse's forms: sign them out, change their profile or password,
 * sign out their other sessions, accept an invitation, or log them into the
 * attacker's account. Every form POST of src/http/pages/ passes one
 * preHandler (`Pages.assertFormAllowed`, src/http/pages/page.ts): a request
 * the browser marks `Sec-Fetch-Site: cross-site` is refused whatever it
 * carries, and the `csrf_token` field must be the HMAC (SECRET_KEY) of the
 * browser's own httpOnly CSRF secret cookie and its session cookie
 * (src/http/pages/cookies.ts), compared in constant time. A missing, empty,
 * tampered token or one made for another browser is refused with a 403 page
 * (`CSRF_INVALID`) before the route runs: no row changes, no mail is queued.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { decodeJwt } from 'jose';
import { call, createOrganization, logIn, type SignedUp, signUp } from '../api/org-helpers.ts';
import { newUser, strongPassword } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';
import { Browser, pageLogIn } from '../support/browser.ts';
import { enrol } from '../support/mfa.ts';
import { addPasskey, loginOptions, registrationOptions } from '../support/passkeys.ts';
import { SoftAuthenticator } from '../support/webauthn-authenticator.ts';

/** The system's time, as the app under test keeps it: codes are made for now. */
const liveClock = { now: () => new Date(), advance: () => {}, set: () => {} };

/** One form of the pages, set up for one attack: who posts, what, and what would change. */
interface Target {
  /** The victim's browser: its cookies go with every post, as a browser's do. */
  browser: Browser;
  /** A page of this browser that shows a form, for the browser's own valid token. */
  formPage: string;
  url: string;
  fields: Record<string, string>;
  /** What the post would change, read from the database (and the mail outbox). */
  state: () => Promise<unknown>;
  /** The status of the genuine post: 303 for a form, 200 for the JSON options the passkey script asks for. */
  accepted?: number;
}

function assertCsrfRefused(res: LightMyRequestResponse, what: string): void {
  assert.equal(res.statusCode, 403, `${what}: ${res.body.slice(0, 500)}`);
  assert.match(String(res.headers['content-type']), /^text\/html/, what);
  assert.match(res.body, /CSRF_INVALID/, what);
  assert.equal(res.headers.location, undefined, what);
}

describe('CSRF on every form of the pages', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;
  /** The attacker, signed in on the site with an account of their own: their tokens are real ones. */
  let mallory: Browser;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({
      RATE_LIMIT_INVITATIONS: '100000/1h',
      EMAIL_SIGN_IN: 'both',
      RATE_LIMIT_EMAIL_SIGN_IN: '100000/1h',
      EMAIL_SIGN_IN_LIMIT_PER_ADDRESS: '100000/1h',
    }));
    const account = await signUp(app);
    mallory = new Browser(app);
    await pageLogIn(mallory, account.username, account.password);
  });
  after(() => close());

  const db = () => app.gatehouse.db;
  const outboxCount = async (email: string) =>
    (await db().selectFrom('email_outbox').select('id').where('to_address', '=', email).execute()).length;
  const user = (id: number) => db().selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  const sessionsLive = (id: number) =>
    db().selectFrom('sessions').select('id').where('user_id', '=', id).where('revoked_at', 'is', null).execute();
  const challengeCount = async () => (await db().selectFrom('webauthn_challenges').select('id').execute()).length;

  /** A verified account and a browser signed in to it through the login page. */
  async function signedInVictim(): Promise<{ account: SignedUp; browser: Browser }> {
    const account = await signUp(app);
    const browser = new Browser(app);
    await pageLogIn(browser, account.username, account.password);
    return { account, browser };
  }

  /** An anonymous browser that has seen the site (it holds a CSRF secret cookie). */
  async function anonymous(page: string): Promise<Browser> {
    const browser = new Browser(app);
    await browser.get(page);
    return browser;
  }

  /** A registration through the API, unverified, and the token of its verification mail. */
  async function unverified() {
    const fields = newUser();
    const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: fields });
    assert.equal(res.statusCode, 201, res.body);
    return {
      id: Number(JSON.parse(res.body).id),
      email: fields.email,
      token: await mailedToken(fields.email, '/verify-email'),
    };
  }

  /** The token of the first link to `path` mailed to `email`, read from the SMTP server. */
  async function mailedToken(email: string, path: string): Promise<string> {
    for (let count = 1; ; count++) {
      const links = (await smtp.waitFor(email, count)).flatMap((m) => m.links);
      const link = links.find((l) => l.includes(`${path}?token=`));
      if (link) return tokenFrom(link);
    }
  }

  const TARGETS: Record<string, () => Promise<Target>> = {
    'POST /register (an account created in the victim’s name)': async () => {
      const fields = newUser();
      return {
        browser: await anonymous('/register'),
        formPage: '/register',
        url: '/register',
        fields: { ...fields, confirm_password: fields.password },
        state: async () =>
          (await db().selectFrom('users').select('id').where('username', '=', fields.username).execute()).length,
      };
    },
    'POST /login (login CSRF: the victim signed in to the attacker’s account)': async () => {
      const attacker = await signUp(app);
      const count = async (table: 'sessions' | 'login_attempts') =>
        (await db().selectFrom(table).select('id').where('user_id', '=', attacker.id).execute()).length;
      return {
        browser: await anonymous('/login'),
        formPage: '/login',
        url: '/login',
        fields: { username: attacker.username, password: attacker.password },
        state: async () => ({ sessions: await count('sessions'), attempts: await count('login_attempts') }),
      };
    },
    'POST /logout (the victim signed out)': async () => {
      const { account, browser } = await signedInVictim();
      return {
        browser,
        formPage: '/logout',
        url: '/logout',
        fields: {},
        state: async () =>
          (
            await db()
              .selectFrom('sessions')
              .select(['id', 'revoked_at'])
              .where('user_id', '=', account.id)
              .where('kind', '=', 'browser')
              .execute()
          ).map((s) => [s.id, s.revoked_at]),
      };
    },
    'POST /verify-email (a link spent for the victim)': async () => {
      const pending = await unverified();
      return {
        browser: await anonymous('/verify-email'),
        formPage: `/verify-email?token=${pending.token}`,
        url: '/verify-email',
        fields: { token: pending.token },
        state: async () => (await user(pending.id)).email_verified_at,
      };
    },
    'POST /resend-verification (mail sent to the victim)': async () => {
      const pending = await unverified();
      return {
        browser: await anonymous('/verify-email'),
        formPage: '/verify-email',
        url: '/resend-verification',
        fields: { email: pending.email },
        state: () => outboxCount(pending.email),
      };
    },
    'POST /forgot-password (reset mail sent to the victim)': async () => {
      const victim = await signUp(app);
      return {
        browser: await anonymous('/forgot-password'),
        formPage: '/forgot-password',
        url: '/forgot-password',
        fields: { email: victim.email },
        state: () => outboxCount(victim.email),
      };
    },
    'POST /email-sign-in/request (a sign-in mail sent to the victim)': async () => {
      const victim = await signUp(app);
      return {
        browser: await anonymous('/email-sign-in'),
        formPage: '/email-sign-in',
        url: '/email-sign-in/request',
        fields: { email: victim.email },
        state: () => outboxCount(victim.email),
        accepted: 200,
      };
    },
    'POST /email-sign-in (the attacker’s sign-in link spent in the victim’s browser: a login into the attacker’s account)':
      async () => {
        const attacker = await signUp(app);
        const asked = await call(app, 'POST', '/api/v1/login/email', undefined, { email: attacker.email });
        assert.equal(asked.statusCode, 202, asked.body);
        const token = await mailedToken(attacker.email, '/email-sign-in');
        const id = Number(attacker.body.id);
        return {
          browser: await anonymous('/email-sign-in'),
          formPage: `/email-sign-in?token=${token}`,
          url: '/email-sign-in',
          fields: { token },
          state: async () =>
            (await db().selectFrom('sessions').select('id').where('user_id', '=', id).execute()).length,
        };
      },
    'POST /reset-password (the victim’s password set by the attacker)': async () => {
      const victim = await signUp(app);
      const asked = await call(app, 'POST', '/api/v1/forgot-password', undefined, { email: victim.email });
      assert.equal(asked.statusCode, 202, asked.body);
      const token = await mailedToken(victim.email, '/reset-password');
      const password = strongPassword();
      return {
        browser: await anonymous('/forgot-password'),
        formPage: `/reset-password?token=${token}`,
        url: '/reset-password',
        fields: { token, new_password: password, confirm_password: password },
        state: async () => (await user(victim.id)).password_hash,
      };
    },
    'POST /account, action=profile (the victim’s profile changed)': async () => {
      const { account, browser } = await signedInVictim();
      return {
        browser,
        formPage: '/account',
        url: '/account',
        fields: { action: 'profile', first_name: 'Pwned', last_name: 'Attacker', language_code: 'de' },
        state: async () => {
          const row = await user(account.id);
          return [row.first_name, row.last_name, row.language_code];
        },
      };
    },
    'POST /account, action=password (the victim’s password changed)': async () => {
      const { account, browser } = await signedInVictim();
      const password = strongPassword();
      return {
        browser,
        formPage: '/account',
        url: '/account',
        fields: {
          action: 'password',
          current_password: account.password,
          new_password: password,
          confirm_password: password,
        },
        state: async () => (await user(account.id)).password_hash,
      };
    },
    'POST /account, action=sign_out_session (the victim’s other session signed out)': async () => {
      const { account, browser } = await signedInVictim();
      const phone = await logIn(app, account.email, account.password);
      const phoneSession = String(decodeJwt(phone.token).sid);
      return {
        browser,
        formPage: '/account',
        url: '/account',
        fields: { action: 'sign_out_session', session_id: phoneSession },
        state: async () =>
          (
            await db()
              .selectFrom('sessions')
              .select('revoked_at')
              .where('uuid', '=', phoneSession)
              .executeTakeFirstOrThrow()
          ).revoked_at,
      };
    },
    'POST /login/mfa (login CSRF through the second step: the victim signed in to the attacker’s account)':
      async () => {
        const attacker = await signUp(app);
        const { authenticator } = await enrol(app, attacker.token, liveClock);
        const attackerBrowser = new Browser(app);
        const challenge = await attackerBrowser.submit(
          '/login',
          { username: attacker.username, password: attacker.password },
          '/login',
        );
        const mfaToken = /name="mfa_token" value="([^"]+)"/.exec(challenge.body)?.[1];
        assert.ok(mfaToken, challenge.body.slice(0, 500));
        return {
          browser: await anonymous('/login'),
          formPage: '/login',
          url: '/login/mfa',
          fields: { mfa_token: mfaToken, code: authenticator.code(1) },
          state: async () =>
            (await db().selectFrom('sessions').select('id').where('user_id', '=', attacker.id).execute()).length,
        };
      },
    'POST /account/mfa, action=disable (the victim’s second factor turned off)': async () => {
      const { account, browser } = await signedInVictim();
      const { authenticator } = await enrol(app, account.token, liveClock);
      return {
        browser,
        formPage: '/account/mfa',
        url: '/account/mfa',
        fields: { action: 'disable', password: account.password, code: authenticator.code(1) },
        state: async () =>
          (await db().selectFrom('mfa_totp').select('user_id').where('user_id', '=', account.id).execute()).length,
      };
    },
    'POST /account/passkeys/options (a passkey challenge issued for the victim)': async () => {
      const { account, browser } = await signedInVictim();
      return {
        browser,
        formPage: '/account',
        url: '/account/passkeys/options',
        accepted: 200,
        fields: {},
        state: async () =>
          (await db().selectFrom('webauthn_challenges').select('id').where('user_id', '=', account.id).execute())
            .length,
      };
    },
    'POST /account/passkeys (the attacker’s passkey added to the victim’s account)': async () => {
      const { account, browser } = await signedInVictim();
      const response = new SoftAuthenticator().register(await registrationOptions(app, account.token));
      return {
        browser,
        formPage: '/account',
        url: '/account/passkeys',
        fields: { response: JSON.stringify(response), name: 'Attacker' },
        state: async () =>
          (await db().selectFrom('passkeys').select('id').where('user_id', '=', account.id).execute()).length,
      };
    },
    'POST /account/passkeys/:id/delete (the victim’s passkey removed)': async () => {
      const { account, browser } = await signedInVictim();
      const { passkey } = await addPasskey(app, account.token);
      return {
        browser,
        formPage: '/account',
        url: `/account/passkeys/${passkey.id}/delete`,
        fields: {},
        state: async () =>
          (await db().selectFrom('passkeys').select('id').where('user_id', '=', account.id).execute()).length,
      };
    },
    'POST /login/passkey/options (a challenge issued for a stranger)': async () => ({
      browser: await anonymous('/login'),
      formPage: '/login',
      url: '/login/passkey/options',
      accepted: 200,
      fields: {},
      state: challengeCount,
    }),
    'POST /login/passkey (login CSRF: the victim signed in to the attacker’s account with a passkey)': async () => {
      const attacker = await signUp(app);
      const { authenticator } = await addPasskey(app, attacker.token);
      const options = await loginOptions(app);
      return {
        browser: await anonymous('/login'),
        formPage: '/login',
        url: '/login/passkey',
        fields: { challenge_id: options.challenge_id, response: JSON.stringify(authenticator.authenticate(options)) },
        state: async () =>
          (await db().selectFrom('sessions').select('id').where('user_id', '=', attacker.id).execute()).length,
      };
    },
    'POST /login/mfa/passkey-options (a second-step challenge issued for another login)': async () => {
      const attacker = await signUp(app);
      await addPasskey(app, attacker.token);
      await enrol(app, attacker.token, liveClock);
      const challenge = await app.inject({
        method: 'POST',
        url: '/api/v1/login',
        payload: { username: attacker.username, password: attacker.password },
      });
      const mfaToken = String(JSON.parse(challenge.body).mfa_token);
      return {
        browser: await anonymous('/login'),
        formPage: '/login',
        url: '/login/mfa/passkey-options',
        accepted: 200,
        fields: { mfa_token: mfaToken },
        state: challengeCount,
      };
    },
    'POST /accept-invitation (the victim joined to the attacker’s organization)': async () => {
      const admin = await signUp(app);
      const org = await createOrganization(app, admin.token, `Org ${admin.username}`);
      const { account, browser } = await signedInVictim();
      const invited = await call(app, 'POST', `/api/v1/organizations/${String(org.uuid)}/invitations`, admin.token, {
        email: account.email,
        role: 'admin',
      });
      assert.equal(invited.statusCode, 201, invited.body);
      const token = await mailedToken(account.email, '/accept-invitation');
      return {
        browser,
        formPage: `/accept-invitation?token=${token}`,
        url: '/accept-invitation',
        fields: { token },
        state: async () =>
          (await db().selectFrom('memberships').select('organization_id').where('user_id', '=', account.id).execute())
            .length,
      };
    },
    'POST /account, action=change_email (the victim’s account moved to the attacker’s address)': async () => {
      const { account, browser } = await signedInVictim();
      const attackerAddress = `moved.${account.email}`;
      return {
        browser,
        formPage: '/account',
        url: '/account',
        fields: { action: 'change_email', new_email: attackerAddress, password: account.password },
        state: () => outboxCount(attackerAddress),
      };
    },
    'POST /account/email/confirm (a change of address confirmed in the victim’s browser)': async () => {
      const victim = await signUp(app);
      const newEmail = `new.${victim.email}`;
      const asked = await call(app, 'POST', '/api/v1/me/email', victim.token, {
        new_email: newEmail,
        password: victim.password,
      });
      assert.equal(asked.statusCode, 202, asked.body);
      const token = await mailedToken(newEmail, '/account/email/confirm');
      return {
        browser: await anonymous(`/account/email/confirm?token=${token}`),
        formPage: `/account/email/confirm?token=${token}`,
        url: '/account/email/confirm',
        fields: { token },
        state: async () => (await user(victim.id)).email,
      };
    },
    'POST /account/email/revert (a change of address undone, every session signed out)': async () => {
      const victim = await signUp(app);
      const newEmail = `new.${victim.email}`;
      const asked = await call(app, 'POST', '/api/v1/me/email', victim.token, {
        new_email: newEmail,
        password: victim.password,
      });
      assert.equal(asked.statusCode, 202, asked.body);
      const confirmed = await call(app, 'POST', '/api/v1/me/email/confirm', undefined, {
        token: await mailedToken(newEmail, '/account/email/confirm'),
      });
      assert.equal(confirmed.statusCode, 200, confirmed.body);
      const token = await mailedToken(victim.email, '/account/email/revert');
      return {
        browser: await anonymous(`/account/email/revert?token=${token}`),
        formPage: `/account/email/revert?token=${token}`,
        url: '/account/email/revert',
        fields: { token },
        state: async () => [(await user(victim.id)).email, (await sessionsLive(victim.id)).length],
      };
    },
  };

  test('the forms attacked below are every form POST of src/http/pages/', () => {
    const dir = resolve(import.meta.dirname, '../../src/http/pages');
    const routes = new Set<string>();
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      for (const match of readFileSync(join(dir, file), 'utf8').matchAll(/app\.post(?:<[^>]*>)?\(\s*'([^']+)'/g)) {
        routes.add(match[1] as string);
      }
    }
    assert.ok(routes.size >= 9, [...routes].join());
    const covered = new Set(Object.keys(TARGETS).map((name) => /^POST (\/[\w/:-]+)/.exec(name)?.[1]));
    assert.deepEqual([...routes].sort(), [...covered].sort());
  });

  for (const [name, setUp] of Object.entries(TARGETS)) {
    test(`${name}: refused 403 CSRF_INVALID without a token, with another session’s, a tampered or an empty one, or cross-site; nothing changes`, async () => {
      const target = await setUp();
      const { browser, url, fields } = target;
      const own = await browser.csrfToken(target.formPage);
      const malloryToken = await mallory.csrfToken('/account');
      const tampered = `${own.slice(0, -1)}${own.endsWith('A') ? 'B' : 'A'}`;
      const before = await target.state();

      const attempts: [string, Record<string, string>, Record<string, string>?][] = [
        ['no token', fields],
        ['an empty token', { ...fields, csrf_token: '' }],
        ['the attacker’s own token', { ...fields, csrf_token: malloryToken }],
        ['a tampered token', { ...fields, csrf_token: tampered }],
        ['the token twice', { ...fields, csrf_token: own }],
        ['a valid token, sent cross-site', { ...fields, csrf_token: own }, { 'sec-fetch-site': 'cross-site' }],
      ];
      for (const [what, body, headers] of attempts) {
        if (what === 'the token twice') {
          // A repeated field parses as an array: not a token.
          const res = await app.inject({
            method: 'POST',
            url,
            headers: {
              'content-type': 'application/x-www-form-urlencoded',
              cookie: [...browser.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
            },
            payload: `${new URLSearchParams(body).toString()}&csrf_token=${encodeURIComponent(own)}`,
          });
          assertCsrfRefused(res, what);
          continue;
        }
        assertCsrfRefused(await browser.post(url, body, headers), what);
      }
      // The victim's valid token without the CSRF cookie it was made for (a browser that never saw the site).
      const cookieless = new Browser(app);
      for (const [k, v] of browser.cookies) if (!k.includes('csrf')) cookieless.cookies.set(k, v);
      assertCsrfRefused(await cookieless.post(url, { ...fields, csrf_token: own }), 'no CSRF cookie');

      await app.gatehouse.outbox.drain();
      assert.deepEqual(await target.state(), before, 'a refused post changed nothing');

      // The same post from the site itself goes through: the refusals above were the token's doing.
      const accepted = await browser.post(url, { ...fields, csrf_token: own });
      assert.equal(accepted.statusCode, target.accepted ?? 303, accepted.body.slice(0, 500));
      assert.notDeepEqual(await target.state(), before, 'the genuine post changes what the forged ones did not');
    });
  }
});
