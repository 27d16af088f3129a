/**
 * The attack: finding out whether an address has an account by registering.
 * With REGISTRATION_ENUMERATION_SAFE=true no sequence of registrations
 * (email, username, both, in any order; API JSON, API form, HTML page) may
 * answer differently for a taken address than for a free one. Each probe is
 * scripted twice, once against an address with an account and once against
 * one without, and the two transcripts must be identical: status, media
 * type, body, redirect, the page the redirect leads to, and the number of
 * password hashes computed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { SYSTEM_CONTEXT } from '../../src/domain/request-context.ts';
import { registerAccount } from '../../src/flows/register.ts';
import { strongPassword, uniqueName } from '../helpers.ts';
import { startAppWithMail, type TestMailServer } from '../mail-server.ts';
import { Browser } from '../support/browser.ts';

interface Registration {
  email: string;
  username: string;
}

/** What a client sees of one answer, with the page's per-visitor tokens blanked. */
interface Seen {
  status: number;
  type: string;
  body: string;
  location?: string;
  /** The page a redirect leads to, as the browser shows it next. */
  next?: string;
  /** Password hashes computed while answering: the cost that timing would show. */
  hashes: number;
}

/** A page with its CSRF token blanked: the rest must be identical. */
function normalisePage(html: string): string {
  return html.replace(/name="csrf_token" value="[^"]+"/g, 'name="csrf_token" value=""');
}

type Transport = (app: FastifyInstance, registration: Registration) => Promise<Omit<Seen, 'hashes'>>;

const TRANSPORTS: Record<string, Transport> = {
  'API, JSON': async (app, registration) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ ...registration, password: strongPassword() }),
    });
    return { status: res.statusCode, type: String(res.headers['content-type']), body: res.body };
  },
  'API, form': async (app, registration) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/register',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      payload: new URLSearchParams({ ...registration, password: strongPassword() }).toString(),
    });
    return { status: res.statusCode, type: String(res.headers['content-type']), body: res.body };
  },
  'HTML page': async (app, registration) => {
    const browser = new Browser(app);
    const form = await browser.get('/register');
    const csrf = /name="csrf_token" value="([^"]+)"/.exec(form.body)?.[1];
    assert.ok(csrf, 'the registration page has a CSRF token');
    const password = strongPassword();
    const res = await browser.post('/register', {
      csrf_token: csrf,
      ...registration,
      password,
      confirm_password: password,
    });
    const location = res.headers.location === undefined ? undefined : String(res.headers.location);
    const next = location === undefined ? undefined : normalisePage((await browser.get(location)).body);
    return {
      status: res.statusCode,
      type: String(res.headers['content-type'] ?? ''),
      body: normalisePage(res.body),
      ...(location !== undefined && { location }),
      ...(next !== undefined && { next }),
    };
  },
};

/** The address probed, and a username that goes with it (its owner's, when it has one). */
interface Target {
  email: string;
  username: string;
}

/** The attacker's own address and a username made up for one probe. */
interface Probe {
  email: string;
  username: string;
}

/** Registrations an attacker sends to learn about `target`; `other` is someone else's account. */
const PROBES: Record<string, (target: Target, probe: Probe, other: Target) => Registration[]> = {
  // The probe of the report: a taken address leaves the username free, a free one takes it.
  'the address with a new username, then that username from the probe address': (target, probe) => [
    { email: target.email, username: probe.username },
    { email: probe.email, username: probe.username },
  ],
  'the username from the probe address first, then the address with it': (target, probe) => [
    { email: probe.email, username: probe.username },
    { email: target.email, username: probe.username },
  ],
  "both taken: the address with someone else's username, then that username again": (target, probe, other) => [
    { email: target.email, username: other.username },
    { email: probe.email, username: other.username },
  ],
  'the address with the username that goes with it, then that username from the probe address': (target, probe) => [
    { email: target.email, username: target.username },
    { email: probe.email, username: target.username },
  ],
  'the same registration three times, then its username from the probe address': (target, probe) => [
    { email: target.email, username: probe.username },
    { email: target.email, username: probe.username },
    { email: target.email, username: probe.username },
    { email: probe.email, username: probe.username },
  ],
};

async function account(app: FastifyInstance): Promise<Target> {
  const username = uniqueName('owner');
  const user = { email: `${username}@example.com`, username, password: strongPassword() };
  await registerAccount(app.gatehouse, user, SYSTEM_CONTEXT);
  return { email: user.email, username };
}

function freeTarget(): Target {
  const username = uniqueName('nobody');
  return { email: `${username}@example.com`, username };
}

function probe(): Probe {
  const username = uniqueName('p');
  return { email: `${username}@probe.test`, username };
}

async function transcript(app: FastifyInstance, transport: Transport, registrations: Registration[]): Promise<Seen[]> {
  const seen: Seen[] = [];
  for (const registration of registrations) {
    const before = app.gatehouse.hashPool.completed;
    const answer = await transport(app, registration);
    seen.push({ ...answer, hashes: app.gatehouse.hashPool.completed - before });
  }
  return seen;
}

/** The probe run against an address with an account and against one without. */
async function probeBoth(app: FastifyInstance, transport: Transport, script: (typeof PROBES)[string]) {
  const other = await account(app);
  const taken = await account(app);
  const free = freeTarget();
  return {
    taken: await transcript(app, transport, script(taken, probe(), other)),
    free: await transcript(app, transport, script(free, probe(), other)),
    takenTarget: taken,
    freeTarget: free,
  };
}

describe('registration enumeration, REGISTRATION_ENUMERATION_SAFE=true', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  before(async () => {
    ({ app, smtp, close } = await startAppWithMail({ REGISTRATION_ENUMERATION_SAFE: 'true' }));
  });
  after(() => close());

  for (const [transportName, transport] of Object.entries(TRANSPORTS)) {
    for (const [probeName, script] of Object.entries(PROBES)) {
      test(`${transportName}: ${probeName} — taken and free answer alike`, async () => {
        const { taken, free } = await probeBoth(app, transport, script);
        assert.deepEqual(taken, free);
        for (const seen of taken) {
          assert.equal(seen.hashes, 1, 'every registration hashes its password once');
          if (transportName === 'HTML page') {
            assert.equal(seen.status, 303, seen.body);
            assert.match(seen.next ?? '', /Registration received\. Please check your email to continue/);
          } else {
            assert.equal(seen.status, 202, seen.body);
            assert.deepEqual(JSON.parse(seen.body), {
              message:
                'Registration received. Please check your email to continue; the message explains the next step.',
            });
          }
        }
      });
    }
  }

  test('the owner of a probed address is told by mail; the free address is told its username is taken', async () => {
    const script = PROBES['the username from the probe address first, then the address with it'];
    assert.ok(script);
    const { takenTarget, freeTarget: free } = await probeBoth(app, TRANSPORTS['API, JSON'] as Transport, script);
    // The owner: the verification mail of the account and the notice, in either order.
    const mails = await smtp.waitFor(takenTarget.email, 2);
    assert.deepEqual(mails.map((m) => m.subject).sort(), [
      'Someone tried to register with your address',
      'Verify your email address',
    ]);
    const notice = mails.find((m) => m.subject === 'Someone tried to register with your address');
    assert.match(notice?.text ?? '', /you already have an account/);
    assert.ok(notice?.links.includes('http://gatehouse.test/forgot-password'));
    // The free address asked for a username someone has: nothing was created, the mail says why.
    const [choose] = await smtp.waitFor(free.email);
    assert.equal(choose?.subject, 'Choose another username to finish registering');
    const created = await app.gatehouse.db.selectFrom('users').select('id').where('email', '=', free.email).execute();
    assert.deepEqual(created, []);
  });

  test('validation errors depend on the input only: a weak password answers alike for a taken and a free address', async () => {
    const taken = await account(app);
    const free = freeTarget();
    const weak = (email: string) =>
      app.inject({
        method: 'POST',
        url: '/api/v1/register',
        payload: { email, username: uniqueName('weak'), password: 'short' },
      });
    const [a, b] = [await weak(taken.email), await weak(free.email)];
    assert.equal(a.statusCode, 422, a.body);
    assert.equal(a.body, b.body);
  });
});

describe('registration enumeration, REGISTRATION_ENUMERATION_SAFE=false (the default)', () => {
  test('the same probe tells a taken address from a free one, as documented (201 / 409)', async () => {
    const { app, close } = await startAppWithMail();
    try {
      const script = PROBES['the address with a new username, then that username from the probe address'];
      assert.ok(script);
      const { taken, free } = await probeBoth(app, TRANSPORTS['API, JSON'] as Transport, script);
      assert.notDeepEqual(taken, free);
      assert.deepEqual(
        taken.map((s) => s.status),
        [409, 201],
      );
      assert.deepEqual(
        free.map((s) => s.status),
        [201, 409],
      );
    } finally {
      await close();
    }
  });
});
