import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { subscribes, webhookEventOf, webhookSecretBytes, webhookUrlProblem } from '../../src/domain/webhook-events.ts';
import { signWebhook } from '../../src/infra/webhooks.ts';

const USER = '0b6f3c1e-8d0a-4d6e-9b7a-2f1c3e4d5a6b';
const ORG = '5e2d1c0b-7a6f-4e3d-8c2b-1a0f9e8d7c6b';
const SESSION = '9a8b7c6d-5e4f-4a3b-9c2d-1e0f2a3b4c5d';

test('audit actions map to event types with the uuids of their subjects', () => {
  const event = (
    action: string,
    details: Record<string, unknown> = {},
    userUuid: string | null = USER,
    org: string | null = null,
  ) => webhookEventOf({ action, details, userUuid, organizationUuid: org });
  assert.deepEqual(event('user_registration', { organization_uuid: null }), {
    type: 'user.created',
    data: { user: USER },
  });
  assert.deepEqual(event('email_verification', { email: 'a@example.com' }), {
    type: 'user.verified',
    data: { user: USER },
  });
  assert.deepEqual(event('login_success', { session_uuid: SESSION }), {
    type: 'session.created',
    data: { user: USER, session: SESSION },
  });
  assert.deepEqual(event('session_revoked', { session_uuid: SESSION }), {
    type: 'session.revoked',
    data: { user: USER, session: SESSION },
  });
  // The user row is gone when a deletion is read: its uuid comes from the details.
  assert.deepEqual(event('user_deleted', { uuid: USER }, null), { type: 'user.deleted', data: { user: USER } });
  // The member removed, not the admin who removed them.
  assert.deepEqual(event('member_removed', { member_uuid: USER }, SESSION, ORG), {
    type: 'organization.member_removed',
    data: { user: USER, organization: ORG },
  });
  assert.deepEqual(event('invitation_accepted', {}, USER, ORG), {
    type: 'organization.member_added',
    data: { user: USER, organization: ORG },
  });
  assert.deepEqual(event('organization_deleted', { uuid: ORG }, USER, null), {
    type: 'organization.deleted',
    data: { organization: ORG, user: USER },
  });
  assert.deepEqual(event('password_reset'), { type: 'password.changed', data: { user: USER } });
  assert.deepEqual(event('mfa_reset_by_admin'), { type: 'mfa.disabled', data: { user: USER } });
  // Administration rows name the superuser in user_id: the event names the user acted on.
  const ADMIN = '1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f';
  for (const [action, type] of [
    ['admin_user_created', 'user.created'],
    ['admin_user_deleted', 'user.deleted'],
    ['admin_superuser_changed', 'user.updated'],
    ['admin_sessions_revoked', 'session.revoked'],
  ] as const) {
    assert.deepEqual(event(action, { target_user_uuid: USER }, ADMIN), { type, data: { user: USER } });
    assert.equal(event(action, {}, ADMIN), null);
  }
  assert.deepEqual(event('email_changed', { old_email: 'a@example.com' }), {
    type: 'user.updated',
    data: { user: USER },
  });
  assert.deepEqual(event('email_change_reverted'), { type: 'user.updated', data: { user: USER } });
  assert.deepEqual(event('member_role_changed', { member_uuid: USER, from: 'user', to: 'auditor' }, ADMIN, ORG), {
    type: 'organization.member_updated',
    data: { user: USER, organization: ORG },
  });
  // Not events, or no subject left to name.
  assert.equal(event('login_failure'), null);
  assert.equal(event('admin_users_viewed'), null);
  assert.equal(event('user_registration', {}, null), null);
  assert.equal(event('member_removed', {}, USER, ORG), null);
});

test('an endpoint with no event types gets every type', () => {
  assert.equal(subscribes([], 'user.created'), true);
  assert.equal(subscribes(['user.deleted'], 'user.created'), false);
  assert.equal(subscribes(['user.deleted'], 'user.deleted'), true);
});

test('secrets are whsec_ and the base64 of 24 to 64 bytes', () => {
  assert.deepEqual(webhookSecretBytes(`whsec_${Buffer.alloc(24, 1).toString('base64')}`), Buffer.alloc(24, 1));
  assert.ok(webhookSecretBytes(`whsec_${Buffer.alloc(64, 1).toString('base64')}`));
  assert.equal(webhookSecretBytes(`whsec_${Buffer.alloc(23, 1).toString('base64')}`), undefined);
  assert.equal(webhookSecretBytes(`whsec_${Buffer.alloc(65, 1).toString('base64')}`), undefined);
  assert.equal(webhookSecretBytes(Buffer.alloc(32, 1).toString('base64')), undefined);
  assert.equal(webhookSecretBytes('whsec_####################################'), undefined);
});

test('receiver URLs: absolute http(s), no credentials; production wants https but on loopback', () => {
  assert.equal(webhookUrlProblem('https://hooks.example.com/in', true), undefined);
  assert.equal(webhookUrlProblem('http://127.0.0.1:9000/in', true), undefined);
  assert.equal(webhookUrlProblem('http://localhost/in', true), undefined);
  assert.equal(webhookUrlProblem('http://hooks.example.com/in', false), undefined);
  assert.match(String(webhookUrlProblem('http://hooks.example.com/in', true)), /https/);
  assert.ok(webhookUrlProblem('mailto:a@example.com', false));
  assert.ok(webhookUrlProblem('https://u:p@hooks.example.com/', false));
  assert.ok(webhookUrlProblem('https://hooks.example.com/#x', false));
  assert.ok(webhookUrlProblem('', false));
});

test('the signature is the one the standardwebhooks package verifies, and the spec writes', () => {
  const secret = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
  const bytes = webhookSecretBytes(secret) as Buffer;
  const body = JSON.stringify({ type: 'user.created', timestamp: new Date().toISOString(), data: { user: USER } });
  const timestamp = Math.floor(Date.now() / 1000);
  const signature = signWebhook(bytes, 'msg_1', timestamp, body);
  assert.equal(signature, `v1,${createHmac('sha256', bytes).update(`msg_1.${timestamp}.${body}`).digest('base64')}`);
  const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(timestamp), 'webhook-signature': signature };
  assert.deepEqual(new Webhook(secret).verify(body, headers), JSON.parse(body));
  assert.throws(() => new Webhook(secret).verify(`${body} `, headers));
});
