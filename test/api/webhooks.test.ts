import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createSuperuser } from '../../src/flows/admin.ts';
import { json, logCapture, newUser, startApp, strongPassword, uniqueName } from '../helpers.ts';
import { waitUntil } from '../support/ports.ts';
import { assertProblem } from '../support/problem.ts';
import { type ReceivedEvent, testWebhookSecret, WebhookReceiver } from '../support/webhook-receiver.ts';

type Body = Record<string, unknown>;

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/;

function sessionOf(accessToken: string): string {
  const claims = JSON.parse(Buffer.from(accessToken.split('.')[1] as string, 'base64url').toString()) as Body;
  return String(claims.sid);
}

describe('signed webhooks', () => {
  const secret = testWebhookSecret();
  const receiver = new WebhookReceiver(secret);
  let app: FastifyInstance;
  let adminToken: string;
  let userToken: string;

  before(async () => {
    await receiver.start();
    app = await startApp({
      REQUIRE_EMAIL_VERIFICATION: 'false',
      WEBHOOK_URLS: receiver.url,
      WEBHOOK_SECRET: secret,
      WEBHOOK_RETRY_BASE_MS: '50',
      REDIS_KEY_PREFIX: `t:${uniqueName('webhooks')}:`,
    });
    const admin = newUser();
    await createSuperuser(app.gatehouse, admin, { ip: null, userAgent: 'test' });
    adminToken = String(json(await login(admin.username, admin.password)).access_token);
    const user = newUser();
    assert.equal((await register(user)).statusCode, 201);
    userToken = String(json(await login(user.username, user.password)).access_token);
  });
  after(async () => {
    await app.close();
    await receiver.stop();
  });

  const register = (user: Body) => app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
  const login = (username: unknown, password: unknown) =>
    app.inject({ method: 'POST', url: '/api/v1/login', payload: { username, password } });
  const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = adminToken) =>
    app.inject({
      method,
      url: `/api/v1${url}`,
      headers: { authorization: `Bearer ${token}` },
      ...(payload === undefined ? {} : { payload: payload as Body }),
    });

  async function eventFor(target: WebhookReceiver, type: string, user: string): Promise<ReceivedEvent> {
    let found: ReceivedEvent | undefined;
    await waitUntil(`${type} for ${user}`, () => {
      found = target.ofType(type).find((e) => e.payload.data.user === user);
      return found !== undefined;
    });
    return found as ReceivedEvent;
  }

  test('a registration sends user.created, signed as Standard Webhooks receivers verify it', async () => {
    const res = await register(newUser());
    assert.equal(res.statusCode, 201, res.body);
    const uuid = String(json(res).uuid);
    const event = await eventFor(receiver, 'user.created', uuid);
    assert.deepEqual(Object.keys(event.payload).sort(), ['data', 'timestamp', 'type']);
    assert.match(event.payload.timestamp, RFC3339);
    assert.deepEqual(event.payload.data, { user: uuid });
    assert.match(event.id, /^msg_[A-Za-z0-9_-]+$/);
    assert.match(String(event.headers['webhook-timestamp']), /^\d+$/);
    assert.match(String(event.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]+=*$/);
    assert.equal(event.headers['content-type'], 'application/json');
    assert.deepEqual(receiver.refused, []);
  });

  test('a login sends session.created with the session', async () => {
    const user = newUser();
    const created = await register(user);
    const uuid = String(json(created).uuid);
    const res = await login(user.username, user.password);
    assert.equal(res.statusCode, 200, res.body);
    const event = await eventFor(receiver, 'session.created', uuid);
    assert.deepEqual(event.payload.data, { user: uuid, session: sessionOf(String(json(res).access_token)) });
    // No token, hash or address in any payload.
    for (const e of receiver.events) {
      assert.doesNotMatch(e.body, /eyJ|\$argon2|\$2b\$|@example\.com|password/i, e.body);
    }
  });

  test('a registration refused by a conflict sends nothing; the next one does', async () => {
    const user = newUser();
    const first = await register(user);
    const uuid = String(json(first).uuid);
    await eventFor(receiver, 'user.created', uuid);
    const before = receiver.ofType('user.created').length;
    assertProblem(await register({ ...newUser(), email: user.email }), 409, 'EMAIL_TAKEN');
    assertProblem(await register({ ...newUser(), username: user.username }), 409, 'USERNAME_TAKEN');
    const next = await register(newUser());
    const nextUuid = String(json(next).uuid);
    await eventFor(receiver, 'user.created', nextUuid);
    // Events arrive in order of commit: anything the refused registrations sent would have come first.
    assert.equal(receiver.ofType('user.created').length, before + 1);
  });

  test('profile, organization, password and logout changes send their events, in order of commit', async () => {
    const user = newUser();
    const uuid = String(json(await register(user)).uuid);
    const token = String(json(await login(user.username, user.password)).access_token);
    const auth = { authorization: `Bearer ${token}` };
    const send = (method: 'POST' | 'PATCH', url: string, payload: Body) =>
      app.inject({ method, url: `/api/v1${url}`, headers: auth, payload });
    assert.equal((await send('PATCH', '/me', { first_name: 'Ana' })).statusCode, 200);
    const org = await send('POST', '/organizations', { name: `Org ${uniqueName('o')}` });
    assert.equal(org.statusCode, 201, org.body);
    const next = strongPassword();
    const changed = await send('POST', '/change-password', {
      current_password: user.password,
      new_password: next,
      confirm_password: next,
    });
    assert.ok(changed.statusCode < 300, changed.body);
    const fresh = String(json(await login(user.username, next)).access_token);
    const out = await app.inject({
      method: 'POST',
      url: '/api/v1/logout',
      headers: { authorization: `Bearer ${fresh}` },
    });
    assert.ok(out.statusCode < 300, out.body);

    const revoked = await eventFor(receiver, 'session.revoked', uuid);
    assert.deepEqual(revoked.payload.data, { user: uuid, session: sessionOf(fresh) });
    const mine = receiver.events.filter((e) => e.payload.data.user === uuid).map((e) => e.payload.type);
    assert.deepEqual(mine, [
      'user.created',
      'session.created',
      'user.updated',
      'organization.created',
      'password.changed',
      'session.created',
      'session.revoked',
    ]);
    const created = receiver.ofType('organization.created').find((e) => e.payload.data.user === uuid);
    assert.deepEqual(created?.payload.data, { organization: String(json(org).uuid), user: uuid });
  });

  test("a superuser's changes name the user acted on: created, flag, sessions revoked, deleted", async () => {
    const created = await call('POST', '/admin/users', {
      email: `${uniqueName('made')}@example.com`,
      username: uniqueName('made'),
      password: strongPassword(),
      email_verified: true,
    });
    assert.equal(created.statusCode, 201, created.body);
    const uuid = String(json(created).uuid);
    assert.deepEqual((await eventFor(receiver, 'user.created', uuid)).payload.data, { user: uuid });
    assert.equal((await call('PATCH', `/admin/users/${uuid}`, { is_superuser: true })).statusCode, 200);
    await eventFor(receiver, 'user.updated', uuid);
    assert.equal((await call('DELETE', `/admin/users/${uuid}/sessions`)).statusCode, 204);
    await eventFor(receiver, 'session.revoked', uuid);
    assert.equal((await call('PATCH', `/admin/users/${uuid}`, { is_superuser: false })).statusCode, 200);
    assert.equal((await call('DELETE', `/admin/users/${uuid}`)).statusCode, 204);
    await eventFor(receiver, 'user.deleted', uuid);
    const mine = receiver.events.filter((e) => e.payload.data.user === uuid).map((e) => e.payload.type);
    assert.deepEqual(mine, ['user.created', 'user.updated', 'session.revoked', 'user.updated', 'user.deleted']);
  });

  test("a member's role change sends organization.member_updated naming the member", async () => {
    const member = newUser();
    const made = await call('POST', '/admin/users', { ...member, email_verified: true });
    assert.equal(made.statusCode, 201, made.body);
    const memberUuid = String(json(made).uuid);
    const org = await call('POST', '/organizations', { name: `Org ${uniqueName('r')}` }, userToken);
    assert.equal(org.statusCode, 201, org.body);
    const orgUuid = String(json(org).uuid);
    const invited = await call(
      'POST',
      `/organizations/${orgUuid}/invitations`,
      { email: member.email, role: 'viewer' },
      userToken,
    );
    assert.equal(invited.statusCode, 201, invited.body);
    // The invitation's token, read from the outbox as the member's mailbox would.
    const mail = await app.gatehouse.db
      .selectFrom('email_outbox')
      .select('text_body')
      .where('to_address', '=', String(member.email).toLowerCase())
      .where('template', '=', 'invitation')
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    const token = /accept-invitation\?token=([A-Za-z0-9_-]{43})/.exec(mail.text_body)?.[1];
    assert.ok(token, mail.text_body);
    const memberToken = String(json(await login(member.username, member.password)).access_token);
    const accepted = await call('POST', '/invitations/accept', { token }, memberToken);
    assert.equal(accepted.statusCode, 200, accepted.body);
    await eventFor(receiver, 'organization.member_added', memberUuid);
    const changed = app.inject({
      method: 'PATCH',
      url: `/api/v1/organizations/${orgUuid}/members/${memberUuid}`,
      headers: { authorization: `Bearer ${userToken}` },
      payload: { role: 'user' },
    });
    assert.equal((await changed).statusCode, 200);
    const event = await eventFor(receiver, 'organization.member_updated', memberUuid);
    assert.deepEqual(event.payload.data, { user: memberUuid, organization: orgUuid });
  });

  test('an event has one webhook-id, and a receiver gets each once', async () => {
    await waitUntil('events', () => receiver.events.length >= 3);
    const ids = receiver.events.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length);
  });

  describe('admin endpoints (/admin/webhooks)', () => {
    test('a superuser registers an endpoint; its secret is shown once, stored encrypted, and signs its events', async () => {
      const second = await new WebhookReceiver(testWebhookSecret()).start();
      try {
        const res = await call('POST', '/admin/webhooks', { url: second.url, events: ['user.deleted'] });
        assert.equal(res.statusCode, 201, res.body);
        assert.equal(res.headers['cache-control'], 'no-store');
        const body = json(res);
        assert.match(String(body.id), /^[0-9a-f-]{36}$/);
        assert.equal(body.url, second.url);
        assert.deepEqual(body.events, ['user.deleted']);
        assert.match(String(body.created_at), RFC3339);
        assert.match(String(body.secret), /^whsec_[A-Za-z0-9+/]+=*$/);
        const row = await app.gatehouse.db
          .selectFrom('webhook_endpoints')
          .selectAll()
          .where('uuid', '=', String(body.id))
          .executeTakeFirstOrThrow();
        assert.ok(!row.secret_ciphertext.includes(String(body.secret).slice(6, 30)));

        const list = json<{ items: Body[]; next_cursor: string | null }>(await call('GET', '/admin/webhooks'));
        const listed = list.items.find((e) => e.id === body.id);
        assert.deepEqual(listed, {
          id: body.id,
          url: second.url,
          events: ['user.deleted'],
          created_at: body.created_at,
        });
        assert.equal(list.next_cursor, null);

        // Its own secret signs what it gets: only user.deleted, verified with that secret.
        const verifier = new WebhookReceiver(String(body.secret));
        await second.stop();
        await verifier.start(Number(new URL(second.url).port));
        try {
          const user = newUser();
          const created = await register(user);
          const uuid = String(json(created).uuid);
          const token = String(json(await login(user.username, user.password)).access_token);
          const deleted = await app.inject({
            method: 'DELETE',
            url: '/api/v1/me',
            headers: { authorization: `Bearer ${token}` },
            payload: { password: user.password },
          });
          assert.equal(deleted.statusCode, 204, deleted.body);
          const event = await eventFor(verifier, 'user.deleted', uuid);
          assert.deepEqual(event.payload.data, { user: uuid });
          await eventFor(receiver, 'user.deleted', uuid);
          assert.deepEqual(
            verifier.events.map((e) => e.payload.type),
            ['user.deleted'],
          );
          assert.deepEqual(verifier.refused, []);
        } finally {
          await verifier.stop();
        }

        assert.equal((await call('DELETE', `/admin/webhooks/${body.id}`)).statusCode, 204);
        assertProblem(await call('DELETE', `/admin/webhooks/${body.id}`), 404, 'NOT_FOUND');
        const after = json<{ items: Body[] }>(await call('GET', '/admin/webhooks'));
        assert.equal(
          after.items.find((e) => e.id === body.id),
          undefined,
        );
        const audit = await app.gatehouse.db
          .selectFrom('audit_logs')
          .select('action')
          .where('action', 'in', ['webhook_endpoint_created', 'webhook_endpoint_deleted'])
          .where(({ eb }) => eb(eb.ref('details', '->>').key('endpoint_uuid'), '=', String(body.id)))
          .execute();
        assert.deepEqual(audit.map((a) => a.action).sort(), ['webhook_endpoint_created', 'webhook_endpoint_deleted']);
      } finally {
        await second.stop();
      }
    });

    test('a secret given at registration is the one used', async () => {
      const given = testWebhookSecret();
      const res = await call('POST', '/admin/webhooks', { url: 'https://hooks.example.com/in', secret: given });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(json(res).secret, given);
      assert.deepEqual(json(res).events, []);
      assert.equal((await call('DELETE', `/admin/webhooks/${json(res).id}`)).statusCode, 204);
    });

    for (const [name, payload] of [
      ['a URL that is no URL', { url: 'not a url' }],
      ['a relative URL', { url: '/hooks' }],
      ['an ftp URL', { url: 'ftp://hooks.example.com/in' }],
      ['a URL with a password', { url: 'https://user:pw@hooks.example.com/in' }],
      ['no URL', {}],
      ['an unknown event type', { url: 'https://hooks.example.com/in', events: ['user.exploded'] }],
      ['a secret without whsec_', { url: 'https://hooks.example.com/in', secret: 'c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0' }],
      ['a secret too short', { url: 'https://hooks.example.com/in', secret: 'whsec_c2hvcnQ=' }],
      [
        'a secret that is not base64',
        { url: 'https://hooks.example.com/in', secret: 'whsec_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!' },
      ],
    ] as const) {
      test(`${name} answers 422 VALIDATION_ERROR`, async () => {
        assertProblem(await call('POST', '/admin/webhooks', payload), 422, 'VALIDATION_ERROR');
      });
    }

    for (const [name, payload] of [
      ['a URL that is a number', { url: 42 }],
      ['events that are no list', { url: 'https://hooks.example.com/in', events: 'user.created' }],
    ] as const) {
      test(`${name} answers 400 MALFORMED_REQUEST`, async () => {
        assertProblem(await call('POST', '/admin/webhooks', payload), 400, 'MALFORMED_REQUEST');
      });
    }

    test('a cursor this API never returned answers 422 VALIDATION_ERROR', async () => {
      assertProblem(await call('GET', '/admin/webhooks?cursor=bogus'), 422, 'VALIDATION_ERROR');
    });

    test('an unknown or malformed id answers 404 NOT_FOUND', async () => {
      assertProblem(await call('DELETE', `/admin/webhooks/${crypto.randomUUID()}`), 404, 'NOT_FOUND');
      assertProblem(await call('DELETE', '/admin/webhooks/not-a-uuid'), 404, 'NOT_FOUND');
    });

    test('anyone but a superuser gets 403 FORBIDDEN, and without a token 401', async () => {
      const payload = { url: 'https://hooks.example.com/in' };
      assertProblem(await call('POST', '/admin/webhooks', payload, userToken), 403, 'FORBIDDEN');
      assertProblem(await call('GET', '/admin/webhooks', undefined, userToken), 403, 'FORBIDDEN');
      assertProblem(
        await call('DELETE', `/admin/webhooks/${crypto.randomUUID()}`, undefined, userToken),
        403,
        'FORBIDDEN',
      );
      const anonymous = await app.inject({ method: 'POST', url: '/api/v1/admin/webhooks', payload });
      assert.equal(anonymous.statusCode, 401, anonymous.body);
    });
  });
});

describe('webhook logs', () => {
  const secret = testWebhookSecret();
  const receiver = new WebhookReceiver(secret);
  const logs = logCapture();
  let app: FastifyInstance;

  before(async () => {
    await receiver.start();
    app = await startApp(
      {
        REQUIRE_EMAIL_VERIFICATION: 'false',
        LOG_LEVEL: 'info',
        LOG_FORMAT: 'json',
        WEBHOOK_URLS: `${receiver.url}?token=receiver-token-in-url`,
        WEBHOOK_SECRET: secret,
        REDIS_KEY_PREFIX: `t:${uniqueName('webhook-logs')}:`,
      },
      { logger: { stream: logs.stream } },
    );
  });
  after(async () => {
    await app.close();
    await receiver.stop();
  });

  test('a delivery is logged by webhook-id and receiver origin, never with its secret, signature, body or URL token', async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: newUser() });
    assert.equal(res.statusCode, 201, res.body);
    const uuid = String(json(res).uuid);
    await waitUntil('the event', () => receiver.events.some((e) => e.payload.data.user === uuid));
    const event = receiver.events.find((e) => e.payload.data.user === uuid) as ReceivedEvent;
    await waitUntil('the delivery log line', () => logs.lines.some((l) => l.includes('webhook delivered')));
    const line = JSON.parse(logs.lines.find((l) => l.includes('webhook delivered')) as string) as Body;
    assert.equal(line.webhook_id, event.id);
    assert.equal(line.type, 'user.created');
    assert.equal(line.receiver, `config:${new URL(receiver.url).origin}`);
    const all = logs.lines.join('\n');
    assert.ok(!all.includes(secret.slice(6)), 'secret');
    assert.ok(!all.includes(String(event.headers['webhook-signature']).slice(3)), 'signature');
    assert.ok(!all.includes(event.body), 'body');
    assert.ok(!all.includes('receiver-token-in-url'), 'URL token');
  });
});
