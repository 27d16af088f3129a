/**
 * The attack: the lockout as a weapon. Anyone could keep a user out: five
 * unauthenticated requests per identifier locked it, again and again; while
 * locked, a signed-in victim could not even change the password. And the
 * lock was per identifier: after five failures for the username, the e-mail
 * address still logged in.
 *
 * The defence: the count is per account, whichever identifier is typed (a
 * name without an account is counted by itself, with the same answers), and
 * per source. A browser that has signed in before carries a signed device
 * cookie (`gatehouse-device`, OWASP's "device cookies") and keeps an
 * allowance of its own while strangers — the untrusted source — are locked;
 * a signed-in user's password checks count against their session. A success
 * clears only its own source: the owner signing in hands the attacker
 * nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { createAccount, loginRequest, type TestAccount } from '../api/auth-helpers.ts';
import { json, startApp, strongPassword, uniqueName } from '../helpers.ts';
import { Browser, pageLogIn } from '../support/browser.ts';
import { testClock } from '../support/clock.ts';
import { assertProblem } from '../support/problem.ts';

const DAY_MS = 24 * 3600 * 1000;
const ATTACKER = { 'x-forwarded-for': '203.0.113.66' };
const VICTIM = { 'x-forwarded-for': '192.0.2.10' };

function deviceCookie(res: LightMyRequestResponse): string {
  const cookie = res.cookies.find((c) => c.name === 'gatehouse-device');
  assert.ok(cookie, `no device cookie: ${JSON.stringify(res.headers['set-cookie'])}`);
  return `gatehouse-device=${cookie.value}`;
}

describe('lockout aimed at a victim', () => {
  let app: FastifyInstance;
  const clock = testClock();

  before(async () => {
    app = await startApp(
      { TRUST_PROXY: '127.0.0.1', RATE_LIMIT_LOGIN: '100000/1h', REDIS_KEY_PREFIX: `t:${uniqueName('aimed')}:` },
      { clock },
    );
  });
  after(() => app.close());

  const attack = (identifier: string, password = strongPassword()) => loginRequest(app, identifier, password, ATTACKER);
  /** The attacker's five wrong passwords: 401 each (the fifth locks), then 423. */
  async function lockOut(identifier: string): Promise<void> {
    for (let i = 0; i < 5; i++) assertProblem(await attack(identifier), 401, 'INVALID_CREDENTIALS');
    assertProblem(await attack(identifier), 423, 'ACCOUNT_LOCKED');
  }
  /** The victim's browser signs in and keeps its device cookie; then a day passes. */
  async function signedInYesterday(): Promise<{ victim: TestAccount; cookie: string }> {
    const victim = await createAccount(app);
    const res = await loginRequest(app, victim.username, victim.password, VICTIM);
    assert.equal(res.statusCode, 200, res.body);
    const cookie = deviceCookie(res);
    clock.advance(DAY_MS);
    return { victim, cookie };
  }

  test('five failures by an attacker do not stop the browser that signed in yesterday; the attacker stays locked', async () => {
    const { victim, cookie } = await signedInYesterday();
    await lockOut(victim.username);

    const mine = await loginRequest(app, victim.username, victim.password, { ...VICTIM, cookie });
    assert.equal(mine.statusCode, 200, mine.body);
    assert.ok(deviceCookie(mine), 'a success renews the device cookie');

    // The owner's success cleared the owner's source only.
    const res = assertProblem(await attack(victim.username, victim.password), 423, 'ACCOUNT_LOCKED');
    assert.ok(Number(res.retry_after) > 0);
    assertProblem(await attack(victim.email, victim.password), 423, 'ACCOUNT_LOCKED');
  });

  test('the trusted device has its own allowance of five, and wrong passwords from it lock only it', async () => {
    const { victim, cookie } = await signedInYesterday();
    await lockOut(victim.email);
    const fromDevice = (password: string) => loginRequest(app, victim.username, password, { ...VICTIM, cookie });
    for (let i = 0; i < 5; i++) assertProblem(await fromDevice(strongPassword()), 401, 'INVALID_CREDENTIALS');
    assertProblem(await fromDevice(victim.password), 423, 'ACCOUNT_LOCKED');
  });

  test('failures for the username lock the e-mail address too: the count is per account', async () => {
    const victim = await createAccount(app);
    await lockOut(victim.username);
    assertProblem(await attack(victim.email, victim.password), 423, 'ACCOUNT_LOCKED');
    assertProblem(await attack(victim.email.toUpperCase(), victim.password), 423, 'ACCOUNT_LOCKED');
  });

  test('a name without an account answers the same sequence: 401 five times, then 423', async () => {
    const nobody = uniqueName('nobody');
    await lockOut(nobody);
    assertProblem(await attack(nobody), 423, 'ACCOUNT_LOCKED');
  });

  test('change-password of a signed-in user is never blocked by someone else’s failures', async () => {
    const victim = await createAccount(app);
    const login = await loginRequest(app, victim.username, victim.password, VICTIM);
    const { access_token } = json<{ access_token: string }>(login);
    await lockOut(victim.username);
    const next = strongPassword();
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/change-password',
      headers: { authorization: `Bearer ${access_token}`, ...VICTIM },
      payload: { current_password: victim.password, new_password: next, confirm_password: next },
    });
    assert.equal(res.statusCode, 204, res.body);
    assertProblem(await attack(victim.username, next), 423, 'ACCOUNT_LOCKED');
  });

  test('a device cookie issued to another user, a tampered one and an expired one earn nothing', async () => {
    const { victim, cookie } = await signedInYesterday();
    const mallory = await createAccount(app);
    const hers = deviceCookie(await loginRequest(app, mallory.username, mallory.password, ATTACKER));
    await lockOut(victim.username);

    const withCookie = (value: string) =>
      loginRequest(app, victim.username, victim.password, { ...ATTACKER, cookie: value });
    assertProblem(await withCookie(hers), 423, 'ACCOUNT_LOCKED');
    // The payload names the users the device signed in; rewriting it breaks the signature.
    const [prefix, id, , expires, mac] = cookie.split('.') as [string, string, string, string, string];
    assertProblem(
      await withCookie([prefix, id, String(victim.id), String(Number(expires) + DAY_MS), mac].join('.')),
      423,
      'ACCOUNT_LOCKED',
    );
    const herId = hers.split('.')[1] as string;
    assertProblem(await withCookie(cookie.replace(id, herId)), 423, 'ACCOUNT_LOCKED');

    // 30 days after the last sign-in the cookie is spent.
    clock.advance(30 * DAY_MS);
    await lockOut(victim.username);
    assertProblem(await withCookie(cookie), 423, 'ACCOUNT_LOCKED');
  });

  test('one device can vouch for several users: each sign-in adds the user to the cookie', async () => {
    const { victim, cookie } = await signedInYesterday();
    const partner = await createAccount(app);
    const shared = deviceCookie(await loginRequest(app, partner.username, partner.password, { ...VICTIM, cookie }));
    assert.equal(shared.split('.')[1], cookie.split('.')[1], 'the same device');
    await lockOut(victim.username);
    await lockOut(partner.username);
    for (const user of [victim, partner]) {
      const res = await loginRequest(app, user.username, user.password, { ...VICTIM, cookie: shared });
      assert.equal(res.statusCode, 200, res.body);
    }
  });

  test('the device cookie: httpOnly, SameSite=Lax, Path=/, 30 days; Secure on https; set by the login page, kept by logout', async () => {
    const victim = await createAccount(app);
    const api = await loginRequest(app, victim.username, victim.password);
    const header = String([api.headers['set-cookie']].flat().find((c) => String(c).startsWith('gatehouse-device=')));
    assert.match(header, /; Max-Age=2592000/);
    assert.match(header, /; Path=\//);
    assert.match(header, /; HttpOnly/);
    assert.match(header, /; SameSite=Lax/);
    assert.doesNotMatch(header, /Secure/);

    const secure = await startApp({ PUBLIC_URL: 'https://auth.example.com', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
    try {
      const user = await createAccount(secure);
      const res = await loginRequest(secure, user.username, user.password);
      const set = [res.headers['set-cookie']].flat().map(String);
      assert.match(set.find((c) => c.startsWith('gatehouse-device=')) ?? '', /; Secure/);
    } finally {
      await secure.close();
    }

    // The page: a browser that signs in gets the cookie, and signing out keeps it.
    const browser = new Browser(app);
    await pageLogIn(browser, victim.username, victim.password);
    const device = browser.cookies.get('gatehouse-device');
    assert.ok(device);
    assert.equal((await browser.submit('/logout', {})).statusCode, 303);
    assert.equal(browser.cookies.has('gatehouse-session'), false, 'signed out');
    assert.equal(browser.cookies.get('gatehouse-device'), device, 'the device is still known');
  });
});
