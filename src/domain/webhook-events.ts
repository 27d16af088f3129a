/**
 * Which audit actions are webhook events, and what each event says. Events
 * are derived from sealed audit rows (the dispatcher in infra/webhooks.ts), so
 * an event exists exactly when the change it reports committed. Payloads carry
 * uuids and the type, never tokens, hashes or addresses.
 */

export const WEBHOOK_EVENT_TYPES = [
  'user.created',
  'user.verified',
  'user.updated',
  'user.deleted',
  'session.created',
  'session.revoked',
  'password.changed',
  'organization.created',
  'organization.deleted',
  'organization.member_added',
  'organization.member_removed',
  'organization.member_updated',
  'mfa.enabled',
  'mfa.disabled',
] as const;

type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/** A new audit action becomes an event by a line here (and, if its row lacks a uuid, a detail in its flow). */
const EVENT_OF_ACTION: Record<string, WebhookEventType> = {
  user_registration: 'user.created',
  sso_account_created: 'user.created',
  email_verification: 'user.verified',
  user_updated: 'user.updated',
  admin_user_updated: 'user.updated',
  user_deleted: 'user.deleted',
  login_success: 'session.created',
  sso_login: 'session.created',
  logout: 'session.revoked',
  session_revoked: 'session.revoked',
  password_change: 'password.changed',
  password_reset: 'password.changed',
  organization_created: 'organization.created',
  organization_deleted: 'organization.deleted',
  invitation_accepted: 'organization.member_added',
  member_removed: 'organization.member_removed',
  mfa_enabled: 'mfa.enabled',
  mfa_disabled: 'mfa.disabled',
  mfa_reset_by_admin: 'mfa.disabled',
  email_changed: 'user.updated',
  email_change_reverted: 'user.updated',
  member_role_changed: 'organization.member_updated',
  admin_user_created: 'user.created',
  admin_user_deleted: 'user.deleted',
  admin_superuser_changed: 'user.updated',
  admin_sessions_revoked: 'session.revoked',
};

export const WEBHOOK_ACTIONS: readonly string[] = Object.keys(EVENT_OF_ACTION);

/** An audit row as the dispatcher reads it: uuids joined from users and organizations where the rows still exist. */
export interface AuditFacts {
  action: string;
  details: Record<string, unknown>;
  userUuid: string | null;
  organizationUuid: string | null;
}

export interface WebhookEvent {
  type: WebhookEventType;
  data: Record<string, string>;
}

const text = (value: unknown): string | null => (typeof value === 'string' && value !== '' ? value : null);

/** The event an audit row stands for, or null when it is none (or its subject can no longer be named). */
export function webhookEventOf(row: AuditFacts): WebhookEvent | null {
  const type = EVENT_OF_ACTION[row.action];
  if (!type) return null;
  const details = row.details;
  const data: Record<string, string | null> = {};
  switch (row.action) {
    case 'user_deleted':
      // The user row is gone by the time the row is read; the flow keeps the uuid in the details.
      data.user = text(details.uuid) ?? row.userUuid;
      break;
    case 'member_removed':
    case 'member_role_changed':
      // The audit row's user is whoever removed the member or changed the role; the subject is the member.
      data.user = text(details.member_uuid);
      data.organization = row.organizationUuid;
      break;
    // Administration rows name the superuser in user_id and the user acted on in details.
    case 'admin_user_created':
    case 'admin_user_deleted':
    case 'admin_superuser_changed':
    case 'admin_sessions_revoked':
      data.user = text(details.target_user_uuid);
      break;
    case 'organization_created':
    case 'organization_deleted':
      data.organization = text(details.uuid) ?? row.organizationUuid;
      if (row.userUuid) data.user = row.userUuid;
      break;
    default:
      data.user = row.userUuid;
      if (text(details.session_uuid)) data.session = text(details.session_uuid);
      if (row.organizationUuid) data.organization = row.organizationUuid;
      else if (text(details.organization_uuid)) data.organization = text(details.organization_uuid);
  }
  const subject = type === 'organization.created' || type === 'organization.deleted' ? 'organization' : 'user';
  if (!data[subject]) return null;
  return {
    type,
    data: Object.fromEntries(Object.entries(data).filter(([, v]) => v !== null)) as Record<string, string>,
  };
}

/** Whether an endpoint subscribed to `events` (empty: all) wants `type`. */
export function subscribes(events: readonly string[], type: string): boolean {
  return events.length === 0 || events.includes(type);
}

/** Standard Webhooks secrets: `whsec_` and the base64 of 24 to 64 random bytes. */
const SECRET_PREFIX = 'whsec_';
const SECRET_MIN_BYTES = 24;
const SECRET_MAX_BYTES = 64;
export const WEBHOOK_SECRET_RULE = `\`${SECRET_PREFIX}\` followed by the base64 of ${SECRET_MIN_BYTES} to ${SECRET_MAX_BYTES} bytes`;

/** The bytes a `whsec_` secret stands for (the HMAC key), or undefined when it is not one. */
export function webhookSecretBytes(secret: string): Buffer | undefined {
  if (!secret.startsWith(SECRET_PREFIX)) return undefined;
  const encoded = secret.slice(SECRET_PREFIX.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.replace(/=+$/, '').length % 4 === 1) return undefined;
  const bytes = Buffer.from(encoded, 'base64');
  return bytes.length >= SECRET_MIN_BYTES && bytes.length <= SECRET_MAX_BYTES ? bytes : undefined;
}

export const MAX_WEBHOOK_URL_LENGTH = 2000;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Why a receiver URL is refused, or undefined. Plain http only on a loopback host in production: the body is signed, not secret. */
export function webhookUrlProblem(value: string, production: boolean): string | undefined {
  if (value.length === 0) return 'Must not be empty';
  if (value.length > MAX_WEBHOOK_URL_LENGTH) return `Must be at most ${MAX_WEBHOOK_URL_LENGTH} characters`;
  if (/\s/u.test(value) || !URL.canParse(value)) return 'Must be an absolute http(s) URL';
  const url = new URL(value);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return 'Must be an http(s) URL';
  if (url.username || url.password) return 'Must not contain a user name or password';
  if (url.hash) return 'Must not contain a fragment (#)';
  if (url.protocol === 'http:' && production && !LOOPBACK_HOSTS.has(url.hostname)) {
    return 'Must use https in production (http only for localhost, 127.0.0.1 or [::1])';
  }
  return undefined;
}
