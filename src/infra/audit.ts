import { type Insertable, type Kysely, sql } from 'kysely';
import type { AuditLogsTable, Database } from '../db/schema.ts';
import type { RequestContext } from '../domain/request-context.ts';

export type AuditAction =
  | 'user_registration'
  | 'email_verification'
  | 'login_success'
  | 'login_failure'
  | 'logout'
  | 'token_refresh'
  | 'refresh_token_reuse'
  | 'session_revoked'
  | 'user_updated'
  | 'user_deleted'
  | 'password_change'
  | 'password_reset_request'
  | 'password_reset'
  | 'account_locked'
  | 'account_unlocked'
  | 'organization_created'
  | 'organization_updated'
  | 'organization_deleted'
  | 'member_invited'
  | 'invitation_accepted'
  | 'invitation_revoked'
  | 'member_role_changed'
  | 'member_removed'
  | 'admin_user_updated'
  | 'admin_users_viewed'
  | 'admin_audit_logs_viewed'
  | 'admin_login_attempts_viewed'
  | 'superuser_created'
  | 'reauthenticated'
  | 'mfa_enabled'
  | 'mfa_disabled'
  | 'mfa_challenge_failed'
  | 'mfa_backup_code_used'
  | 'mfa_backup_codes_regenerated'
  | 'mfa_reset_by_admin'
  | 'email_sign_in_request'
  | 'passkey_added'
  | 'passkey_renamed'
  | 'passkey_removed'
  | 'passkey_refused'
  | 'oauth_client_created'
  | 'oauth_client_deleted'
  | 'oauth_client_secret_rotated'
  | 'oauth_authorized'
  | 'oauth_token_issued'
  | 'oauth_consent_granted'
  | 'oauth_consent_revoked'
  | 'oauth_code_reused'
  | 'oauth_logout'
  | 'sso_login'
  | 'sso_account_created'
  | 'sso_refused'
  | 'identity_linked'
  | 'identity_unlinked'
  | 'email_change_requested'
  | 'email_changed'
  | 'email_change_reverted'
  | 'role_created'
  | 'role_updated'
  | 'role_deleted'
  | 'admin_user_created'
  | 'admin_user_deleted'
  | 'admin_password_reset_sent'
  | 'admin_superuser_changed'
  | 'admin_sessions_viewed'
  | 'admin_sessions_revoked'
  | 'admin_user_exported'
  | 'webhook_endpoint_created'
  | 'webhook_endpoint_deleted';

export interface AuditEntry {
  action: AuditAction;
  userId?: number | null;
  organizationId?: number | null;
  details?: Record<string, unknown>;
}

/** The audit_logs row of an entry, for statements that insert it themselves (e.g. in a CTE). */
export function auditRow(entry: AuditEntry, context: RequestContext): Insertable<AuditLogsTable> {
  return {
    action: entry.action,
    user_id: entry.userId ?? null,
    organization_id: entry.organizationId ?? null,
    ip_address: context.ip,
    user_agent: context.userAgent,
    details: JSON.stringify(entry.details ?? {}),
  };
}

/** The columns `auditSelection` fills, in its order. */
export const AUDIT_COLUMNS = ['action', 'user_id', 'organization_id', 'ip_address', 'user_agent', 'details'] as const;

/**
 * An audit row as the select list of `INSERT INTO audit_logs (AUDIT_COLUMNS)
 * SELECT … FROM <cte>` inside a data-modifying statement: the row is written
 * once per row the CTE returns, so only when the change it records happened.
 * `userIdColumn` takes the user id from the CTE (a user inserted by the same
 * statement) instead of from the entry.
 */
export function auditSelection(entry: AuditEntry, context: RequestContext, userIdColumn?: string) {
  const row = auditRow(entry, context);
  return [
    sql.val(row.action).as('action'),
    (userIdColumn ? sql.ref(userIdColumn) : sql.val(row.user_id ?? null)).as('user_id'),
    sql.val(row.organization_id ?? null).as('organization_id'),
    sql.val(row.ip_address ?? null).as('ip_address'),
    sql.val(row.user_agent ?? null).as('user_agent'),
    sql`${row.details}::jsonb`.as('details'),
  ];
}

/** Writes one audit row in the caller's transaction, so it commits or rolls back with the change. */
export async function recordAudit(db: Kysely<Database>, entry: AuditEntry, context: RequestContext): Promise<void> {
  await db.insertInto('audit_logs').values(auditRow(entry, context)).execute();
}

/** An audit row as the administration and organization APIs list it. */
export interface AuditLogView {
  id: number;
  action: string;
  user_uuid: string | null;
  organization_uuid: string | null;
  ip_address: string | null;
  user_agent: string | null;
  details: Record<string, unknown>;
  created_at: string;
}
