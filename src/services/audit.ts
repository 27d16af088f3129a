import type { Insertable, Kysely } from 'kysely';
import type { AuditLogsTable, Database } from '../db/schema.ts';
import type { RequestContext } from './request-context.ts';

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
  | 'superuser_created';

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

/** Writes one audit row in the caller's transaction, so it commits or rolls back with the change. */
export async function recordAudit(db: Kysely<Database>, entry: AuditEntry, context: RequestContext): Promise<void> {
  await db.insertInto('audit_logs').values(auditRow(entry, context)).execute();
}
