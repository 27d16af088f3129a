import type { ColumnType, Generated, Selectable } from 'kysely';

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T> = ColumnType<T, string, string>;

export interface UsersTable {
  id: Generated<number>;
  uuid: Generated<string>;
  email: string;
  username: string;
  password_hash: string;
  first_name: string | null;
  last_name: string | null;
  /** A full name, as given at registration; optional. */
  name: ColumnType<string | null, string | null | undefined, string | null>;
  language_code: Generated<string>;
  is_active: Generated<boolean>;
  is_superuser: Generated<boolean>;
  email_verified_at: NullableTimestamp;
  password_changed_at: NullableTimestamp;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  last_login_at: NullableTimestamp;
  /** False for an account made by a provider's sign-in, until a password is set. */
  has_password: Generated<boolean>;
  /** The user's own JSON object (PATCH /me); at most 4 KiB serialized. */
  user_metadata: ColumnType<Record<string, unknown>, string | undefined, string>;
  /** Set by superusers and the host application only; at most 4 KiB serialized. */
  app_metadata: ColumnType<Record<string, unknown>, string | undefined, string>;
}

interface OrganizationsTable {
  id: Generated<number>;
  uuid: Generated<string>;
  name: string;
  slug: string;
  /** Members without a second factor are refused by the organization's routes. */
  require_mfa: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

interface RolesTable {
  id: Generated<number>;
  organization_id: number;
  name: string;
  permissions: Json<string[]>;
  /** `admin`, `user`, `viewer`: made with the organization, never changed or deleted. */
  built_in: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

interface MembershipsTable {
  id: Generated<number>;
  user_id: number;
  organization_id: number;
  role_id: number;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

interface InvitationsTable {
  id: Generated<number>;
  uuid: Generated<string>;
  organization_id: number;
  email: string;
  /** Null once the invitation's custom role was deleted (only when it was no longer pending). */
  role_id: number | null;
  invited_by: number | null;
  created_at: Generated<Date>;
  expires_at: Timestamp;
  accepted_at: NullableTimestamp;
  accepted_by: number | null;
  revoked_at: NullableTimestamp;
}

export interface SessionsTable {
  id: Generated<number>;
  uuid: Generated<string>;
  user_id: number;
  refresh_token_hash: string;
  previous_token_hash: string | null;
  rotated_at: NullableTimestamp;
  generation: Generated<number>;
  user_agent: string | null;
  ip_address: string | null;
  kind: Generated<string>;
  created_at: Generated<Date>;
  last_used_at: Generated<Date>;
  expires_at: Timestamp;
  revoked_at: NullableTimestamp;
  revoked_reason: string | null;
  /** When the session's owner last proved who they are (login, or POST /reauthenticate). */
  auth_time: Generated<Date>;
  /** How (RFC 8176 methods, comma-separated): `pwd`, `pwd,otp`, `pwd,backup_code`. */
  amr: Generated<string>;
  /** The `oidc-provider` grant whose tokens this session stands for (kind `oauth`). */
  oauth_grant_id: string | null;
  oauth_client_id: string | null;
}

export type OneTimeTokenPurpose = 'verify_email' | 'reset_password' | 'invitation';

interface OneTimeTokensTable {
  id: Generated<number>;
  purpose: OneTimeTokenPurpose;
  token_hash: string;
  user_id: number | null;
  invitation_id: number | null;
  email: string | null;
  created_at: Generated<Date>;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
}

interface LoginAttemptsTable {
  id: Generated<number>;
  identifier: string;
  user_id: number | null;
  ip_address: string | null;
  user_agent: string | null;
  success: boolean;
  failure_reason: string | null;
  attempted_at: Generated<Date>;
}

interface RegistrationAttemptsTable {
  id: Generated<number>;
  attempted_at: Generated<Date>;
  email: string | null;
  username: string | null;
  ip_address: string | null;
  user_agent: string | null;
  /** The refusal's problem code (PASSWORD_POLICY, EMAIL_TAKEN, RATE_LIMITED, …). */
  reason: string;
}

export interface AuditLogsTable {
  id: Generated<number>;
  action: string;
  user_id: number | null;
  organization_id: number | null;
  ip_address: string | null;
  user_agent: string | null;
  details: Json<Record<string, unknown>>;
  created_at: Generated<Date>;
  prev_hash: string | null;
  hash: string | null;
  /** Position in the hash chain; null until the background sealer reaches the row. */
  seal_seq: number | null;
}

/** The single head row of the audit hash chain (id = 1). */
interface AuditChainTable {
  id: number;
  last_seq: number;
  last_hash: string;
  sealed_at: NullableTimestamp;
}

export interface EmailOutboxTable {
  id: Generated<number>;
  to_address: string;
  subject: string;
  text_body: string;
  html_body: string;
  template: string;
  status: Generated<'pending' | 'sent' | 'failed'>;
  attempts: Generated<number>;
  next_attempt_at: Generated<Date>;
  last_error: string | null;
  created_at: Generated<Date>;
  sent_at: NullableTimestamp;
}

interface PasswordHistoryTable {
  id: Generated<number>;
  user_id: number;
  password_hash: string;
  created_at: Generated<Date>;
}

interface LockoutsTable {
  /** The subject: `user:<id>`, or `name:<identifier>` for a name without an account. */
  identifier: string;
  /** Where the attempts came from: `untrusted`, `device:<id>` or `session:<uuid>`. */
  source: Generated<string>;
  failures: number;
  lock_count: number;
  locked_until: NullableTimestamp;
  updated_at: Generated<Date>;
}

interface MfaTotpTable {
  user_id: number;
  /** `<iv>.<tag>.<ciphertext>`, base64url, AES-256-GCM under the key `key_id` names. */
  secret_ciphertext: string;
  key_id: string;
  /** The last RFC 6238 time step accepted: a code is good once. */
  last_step: ColumnType<number, number | undefined, number>;
  created_at: Generated<Date>;
  /** Null while enrolment waits for the first code. */
  confirmed_at: NullableTimestamp;
}

interface MfaBackupCodesTable {
  id: Generated<number>;
  user_id: number;
  key_id: string;
  /** HMAC-SHA-256 of the normalised code under the key `key_id` names. */
  code_hash: string;
  created_at: Generated<Date>;
}

interface MfaChallengesTable {
  id: Generated<number>;
  /** SHA-256 of the `mfa_token`. */
  token_hash: string;
  user_id: number;
  /** The identifier typed at the password step, for the login_attempts rows. */
  identifier: string;
  /** The lockout source of the login attempt (`untrusted`, `device:<id>`). */
  source: string;
  /** The session kind the login will start (`api`, `browser`). */
  kind: string;
  created_at: Generated<Date>;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
  /** What the first step proved (RFC 8176): `pwd`, or `email` for e-mail sign-in. */
  first_factor: Generated<string>;
}

interface EmailSignInsTable {
  id: Generated<number>;
  user_id: number | null;
  /** The address it was mailed to: the sign-in is bound to it. */
  email: string;
  /** SHA-256 of the link's token (null when only a code was mailed). */
  token_hash: string | null;
  /** Keyed hash of the 6-digit code (null when only a link was mailed). */
  code_hash: string | null;
  /** Wrong codes tried; the code dies at the limit. */
  attempts: Generated<number>;
  created_at: Generated<Date>;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
}

interface PasskeysTable {
  id: Generated<number>;
  uuid: string;
  user_id: number;
  /** The credential id, base64url, as the browser names it. */
  credential_id: string;
  /** The COSE public key, base64url. */
  public_key: string;
  /** The last signature counter accepted (0: the authenticator keeps none). */
  counter: ColumnType<number, number | undefined, number>;
  /** Comma-separated AuthenticatorTransport values. */
  transports: ColumnType<string, string | undefined, string>;
  /** `singleDevice` or `multiDevice` (synced). */
  device_type: string;
  backed_up: boolean;
  name: string;
  created_at: Generated<Date>;
  last_used_at: NullableTimestamp;
}

interface WebauthnChallengesTable {
  id: Generated<number>;
  /** `challenge_id` of a login. */
  uuid: string;
  /** `register`, `login` or `mfa`. */
  purpose: string;
  /** base64url, as sent in the options. */
  challenge: string;
  user_id: number | null;
  mfa_challenge_id: number | null;
  created_at: Generated<Date>;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
}

export interface OauthClientsTable {
  id: Generated<number>;
  client_id: string;
  /** SHA-256 (hex) of a confidential client's secret; null for a public client. */
  client_secret_hash: string | null;
  client_name: string;
  redirect_uris: Json<string[]>;
  post_logout_redirect_uris: Json<string[]>;
  /** `none` (public), `client_secret_basic` or `client_secret_post`. */
  token_endpoint_auth_method: string;
  grant_types: Json<string[]>;
  /** Space-separated scopes the client may ask for. */
  scope: string;
  /** First-party clients skip the consent page. */
  first_party: Generated<boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

interface OidcPayloadsTable {
  model: string;
  id: string;
  payload: Json<Record<string, unknown>>;
  grant_id: string | null;
  uid: string | null;
  user_code: string | null;
  account_id: string | null;
  client_id: string | null;
  /** For a provider `Session`: the Gatehouse page session (sessions.uuid) it follows. */
  page_session_uuid: string | null;
  expires_at: NullableTimestamp;
  consumed_at: NullableTimestamp;
}

interface OidcKeysTable {
  kid: string;
  alg: string;
  /** The private JWK, AES-256-GCM encrypted under a key derived from SECRET_KEY. */
  private_jwk: string;
  created_at: Generated<Date>;
}

interface UserIdentitiesTable {
  id: Generated<number>;
  uuid: Generated<string>;
  user_id: number;
  /** The SSO_PROVIDERS name. */
  provider: string;
  /** The provider's stable id of the person (`sub`, GitHub's numeric id). */
  subject: string;
  email: string | null;
  email_verified: Generated<boolean>;
  created_at: Generated<Date>;
  last_used_at: NullableTimestamp;
}

interface SsoStatesTable {
  id: Generated<number>;
  provider: string;
  state_hash: string;
  binding_hash: string;
  nonce: string;
  code_verifier: string;
  redirect_to: string | null;
  link_user_id: number | null;
  created_at: Generated<Date>;
  expires_at: Timestamp;
  used_at: NullableTimestamp;
}

interface EmailChangesTable {
  id: Generated<number>;
  user_id: number;
  old_email: string;
  new_email: string;
  confirm_token_hash: string;
  confirm_expires_at: Timestamp;
  confirmed_at: NullableTimestamp;
  revert_token_hash: string | null;
  revert_expires_at: NullableTimestamp;
  reverted_at: NullableTimestamp;
  cancelled_at: NullableTimestamp;
  created_at: Generated<Date>;
}

export interface WebhookEndpointsTable {
  id: Generated<number>;
  uuid: Generated<string>;
  url: string;
  /** Event types sent to it; empty: every type. */
  events: ColumnType<string[], string[] | undefined, string[]>;
  /** `<iv>.<tag>.<ciphertext>` of the `whsec_…` secret, AES-256-GCM under `key_id`. */
  secret_ciphertext: string;
  key_id: string;
  created_by: number | null;
  created_at: Generated<Date>;
}

export interface WebhookDeliveriesTable {
  id: Generated<number>;
  /** The `webhook-id` header: one per event, the same on every attempt and replay. */
  msg_id: string;
  /** `endpoint:<uuid>` or `config:<url>`. */
  target: string;
  endpoint_id: number | null;
  url: string;
  event_type: string;
  /** The JSON body, exactly as signed. */
  payload: string;
  /** seal_seq of the audit row: the order of commit. */
  seq: number;
  status: Generated<'pending' | 'delivered' | 'failed'>;
  attempts: Generated<number>;
  next_attempt_at: Generated<Date>;
  last_error: string | null;
  created_at: Generated<Date>;
  finished_at: NullableTimestamp;
}

interface WebhookCursorTable {
  id: number;
  last_seq: number;
}

export interface Database {
  users: UsersTable;
  organizations: OrganizationsTable;
  roles: RolesTable;
  memberships: MembershipsTable;
  invitations: InvitationsTable;
  sessions: SessionsTable;
  one_time_tokens: OneTimeTokensTable;
  login_attempts: LoginAttemptsTable;
  registration_attempts: RegistrationAttemptsTable;
  audit_logs: AuditLogsTable;
  audit_chain: AuditChainTable;
  email_outbox: EmailOutboxTable;
  password_history: PasswordHistoryTable;
  lockouts: LockoutsTable;
  mfa_totp: MfaTotpTable;
  mfa_backup_codes: MfaBackupCodesTable;
  mfa_challenges: MfaChallengesTable;
  email_sign_ins: EmailSignInsTable;
  passkeys: PasskeysTable;
  webauthn_challenges: WebauthnChallengesTable;
  oauth_clients: OauthClientsTable;
  oidc_payloads: OidcPayloadsTable;
  oidc_keys: OidcKeysTable;
  user_identities: UserIdentitiesTable;
  sso_states: SsoStatesTable;
  email_changes: EmailChangesTable;
  webhook_endpoints: WebhookEndpointsTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_cursor: WebhookCursorTable;
}

export type User = Selectable<UsersTable>;
