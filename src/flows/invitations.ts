import { type Kysely, type SelectQueryBuilder, sql } from 'kysely';
import type { RateLimit } from '../config.ts';
import type { Database } from '../db/schema.ts';
import { checkEmail } from '../domain/account-rules.ts';
import { AppError, type FieldError } from '../domain/errors.ts';
import { isLinkTokenShaped, isUuid } from '../domain/identifiers.ts';
import type { RequestContext } from '../domain/request-context.ts';
import { checkRole } from '../domain/roles.ts';
import { recordAudit } from '../infra/audit.ts';
import type { Services } from '../infra/container.ts';
import { outboxRow, publicLink } from '../infra/mail.ts';
import {
  findLiveToken,
  issueOneTimeToken,
  ONE_TIME_TOKEN_TTL_SECONDS,
  spendOneTimeToken,
} from '../infra/one-time-tokens.ts';
import type { AuthContext } from '../infra/sessions.ts';
import {
  findMembership,
  isMember,
  lockAndAuthorize,
  lockOrganization,
  type OrganizationAccess,
  organizationRole,
  organizationRoleNames,
  requireHoldsAll,
  rolePermissions,
} from './org-access.ts';
import { getOrganization, type OrganizationView } from './organizations.ts';

/** Where the mailed link points: `PUBLIC_URL/accept-invitation?token=…`. */
const INVITATION_LINK_PATH = 'accept-invitation';

export interface InvitationView {
  uuid: string;
  organization_uuid: string;
  email: string;
  role: string;
  invited_by: string | null;
  created_at: string;
  expires_at: string;
}

const invalidInvitation = () =>
  new AppError('TOKEN_INVALID_OR_EXPIRED', {
    detail: 'This invitation is invalid, has already been used, was revoked or has expired. Ask for a new one.',
  });

/** The address and one of the organization's roles (`roles`: built-in and custom), or 422 naming the fields. */
function validInvitationInput(
  input: { email?: unknown; role?: unknown },
  roles: readonly string[],
): { email: string; role: string } {
  const errors: FieldError[] = [];
  let email: string | undefined;
  if (typeof input.email !== 'string') {
    errors.push({ field: 'email', message: 'Email is required', code: 'required' });
  } else {
    const check = checkEmail(input.email);
    if (check.ok) email = check.value;
    else errors.push(check.error);
  }
  const roleCheck = checkRole(input.role, 'role', roles);
  const role = roleCheck.ok ? roleCheck.value : undefined;
  if (!roleCheck.ok) errors.push(roleCheck.error);
  if (errors.length > 0 || !email || !role) {
    throw new AppError('VALIDATION_ERROR', { detail: 'One or more fields are invalid', errors });
  }
  return { email, role };
}

/** An invitation still open at `now`: not accepted, not revoked, not expired. */
function pendingAt(now: Date) {
  return sql<boolean>`invitations.accepted_at is null and invitations.revoked_at is null and invitations.expires_at > ${now}`;
}

function invitationQuery(db: Kysely<Database>) {
  return db
    .selectFrom('invitations')
    .innerJoin('organizations', 'organizations.id', 'invitations.organization_id')
    .innerJoin('roles', 'roles.id', 'invitations.role_id')
    .leftJoin('users as inviter', 'inviter.id', 'invitations.invited_by')
    .select([
      'invitations.id',
      'invitations.uuid',
      'organizations.uuid as organization_uuid',
      'invitations.email',
      'roles.name as role',
      'inviter.uuid as invited_by',
      'invitations.created_at',
      'invitations.expires_at',
    ]);
}

type InvitationRow = Awaited<ReturnType<ReturnType<typeof invitationQuery>['executeTakeFirstOrThrow']>>;

function invitationView(row: InvitationRow): InvitationView {
  return {
    uuid: row.uuid,
    organization_uuid: row.organization_uuid,
    email: row.email,
    role: row.role,
    invited_by: row.invited_by,
    created_at: row.created_at.toISOString(),
    expires_at: row.expires_at.toISOString(),
  };
}

/** Revokes the pending invitations matching `where` and voids their links; returns their uuids. */
async function revokePending(
  trx: Kysely<Database>,
  organizationId: number,
  where: { email: string } | { uuid: string },
  now: Date,
): Promise<string[]> {
  let query = trx
    .updateTable('invitations')
    .set({ revoked_at: now })
    .where('organization_id', '=', organizationId)
    .where('accepted_at', 'is', null)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', now);
  query = 'email' in where ? query.where('email', '=', where.email) : query.where('uuid', '=', where.uuid);
  const revoked = await query.returning(['id', 'uuid']).execute();
  if (revoked.length > 0) {
    await trx
      .updateTable('one_time_tokens')
      .set({ used_at: now })
      .where(
        'invitation_id',
        'in',
        revoked.map((r) => r.id),
      )
      .where('used_at', 'is', null)
      .execute();
  }
  return revoked.map((r) => r.uuid);
}

/**
 * The caps that keep invitations from being a mail cannon, besides the
 * per-IP RATE_LIMIT_INVITATIONS: one address receives at most
 * INVITATION_LIMIT_PER_ADDRESS invitations per window from all organizations
 * together, and one organization sends at most INVITATION_LIMIT_PER_ORGANIZATION.
 * Both are counted in PostgreSQL from the invitations themselves (every one,
 * replaced, revoked or accepted, sent a mail), so they hold across instances
 * and restarts; past either, 429 RATE_LIMIT_EXCEEDED with Retry-After, the
 * seconds until the oldest counted invitation leaves the window.
 *
 * Runs in the invitation's transaction, under the organization's row lock
 * (which serialises the organization's count) and an advisory lock on the
 * address (which serialises the address's count across organizations).
 */
async function assertUnderInvitationCaps(
  services: Services,
  trx: Kysely<Database>,
  organizationId: number,
  email: string,
  now: Date,
): Promise<void> {
  const { invitationLimitPerAddress: perAddress, invitationLimitPerOrganization: perOrganization } = services.config;
  await sql`select pg_advisory_xact_lock(hashtextextended(${`gatehouse:invitation:${email}`}, 0))`.execute(trx);
  // The points-th most recent row inside the cap's window: while there is one, the window is full.
  const fullAt = (
    cap: RateLimit,
    rows: SelectQueryBuilder<Database, 'invitations' | 'email_outbox', { created_at: Date }>,
  ) =>
    rows
      .where('created_at', '>', new Date(now.getTime() - cap.durationSeconds * 1000))
      .orderBy('created_at', 'desc')
      .limit(1)
      .offset(cap.points - 1)
      .executeTakeFirst();
  const toAddress = await fullAt(
    perAddress,
    trx.selectFrom('invitations').select('created_at').where('email', '=', email),
  );
  // An organization's deletion takes its invitations with it, but not their mails: counted too,
  // so that deleting and recreating an organization does not reset an address's count.
  const mailedToAddress = await fullAt(
    perAddress,
    trx
      .selectFrom('email_outbox')
      .select('created_at')
      .where('to_address', '=', email)
      .where('template', '=', 'invitation'),
  );
  refuseWhenFull(services, 'invitations_per_address', perAddress, now, [toAddress, mailedToAddress]);
  const byOrganization = await fullAt(
    perOrganization,
    trx.selectFrom('invitations').select('created_at').where('organization_id', '=', organizationId),
  );
  refuseWhenFull(services, 'invitations_per_organization', perOrganization, now, [byOrganization]);
}

/** 429 when any count found its window full, with the seconds until every one of them has room again. */
function refuseWhenFull(
  services: Services,
  limiter: string,
  cap: RateLimit,
  now: Date,
  fullAt: ({ created_at: Date } | undefined)[],
): void {
  const latest = Math.max(...fullAt.map((row) => row?.created_at.getTime() ?? Number.NEGATIVE_INFINITY));
  if (latest === Number.NEGATIVE_INFINITY) return;
  const retryAfter = Math.max(1, Math.ceil((latest + cap.durationSeconds * 1000 - now.getTime()) / 1000));
  services.metrics.rateLimited.inc({ limiter });
  services.log.info({ limiter, retry_after: retryAfter }, 'invitation refused: cap reached');
  throw new AppError('RATE_LIMIT_EXCEEDED', { retryAfter });
}

/**
 * `POST /organizations/{uuid}/invitations`: mails a single-use link valid
 * 7 days. Inviting an address again replaces its pending invitation (the
 * old link stops working); inviting a member is a CONFLICT; past the
 * per-address or per-organization cap, RATE_LIMIT_EXCEEDED.
 */
export async function createInvitation(
  services: Services,
  access: OrganizationAccess,
  input: { email?: unknown; role?: unknown },
  context: RequestContext,
): Promise<InvitationView> {
  const { email, role } = validInvitationInput(input, await organizationRoleNames(services.db, access.organizationId));
  const now = services.clock.now();
  const view = await services.db.transaction().execute(async (trx) => {
    // Serialised per organization: two invitations of one address at once leave one pending.
    const actor = await lockAndAuthorize(trx, access, 'invitations:manage', services.hostPermissions);
    const invitedRole = await organizationRole(trx, access.organizationId, role);
    // A custom role that invites offers no role holding more than it does.
    requireHoldsAll(actor, rolePermissions(invitedRole, services.hostPermissions), `the ${role} role`);
    const invitee = await trx
      .selectFrom('users')
      .select(['id', 'language_code'])
      .where('email', '=', email)
      .executeTakeFirst();
    if (invitee && (await isMember(trx, access.organizationId, invitee.id))) {
      throw new AppError('CONFLICT', { detail: 'This person is already a member of the organization' });
    }
    await assertUnderInvitationCaps(services, trx, access.organizationId, email, now);
    const replaced = await revokePending(trx, access.organizationId, { email }, now);
    const inserted = await trx
      .insertInto('invitations')
      .values({
        organization_id: access.organizationId,
        email,
        role_id: invitedRole.id,
        invited_by: access.userId,
        created_at: now,
        expires_at: new Date(now.getTime() + ONE_TIME_TOKEN_TTL_SECONDS.invitation * 1000),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const token = await issueOneTimeToken(trx, { purpose: 'invitation', invitationId: inserted.id, email, now });
    const inviter = await trx
      .selectFrom('users')
      .select(['email', 'username', 'first_name', 'last_name', 'language_code'])
      .where('id', '=', access.userId)
      .executeTakeFirstOrThrow();
    const mail = outboxRow({
      to: email,
      template: 'invitation',
      languageCode: invitee?.language_code ?? inviter.language_code,
      data: {
        organizationName: access.name,
        inviterName: [inviter.first_name, inviter.last_name].filter(Boolean).join(' ') || inviter.username,
        inviterEmail: inviter.email,
        role,
        link: publicLink(services.config.publicUrl, INVITATION_LINK_PATH, { token }),
        abuseContact: services.config.abuseContact,
      },
    });
    // Stamped with the service clock, which the per-address count reads.
    await trx
      .insertInto('email_outbox')
      .values({ ...mail, created_at: now })
      .execute();
    const row = await invitationQuery(trx).where('invitations.id', '=', inserted.id).executeTakeFirstOrThrow();
    await recordAudit(
      trx,
      {
        action: 'member_invited',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { invitation_uuid: row.uuid, email, role, replaced },
      },
      context,
    );
    return invitationView(row);
  });
  services.outbox.kick();
  return view;
}

/** `GET /organizations/{uuid}/invitations`: pending ones (not accepted, revoked or expired), newest first. */
export async function listPendingInvitations(
  services: Services,
  access: OrganizationAccess,
): Promise<InvitationView[]> {
  const rows = await invitationQuery(services.db)
    .where('invitations.organization_id', '=', access.organizationId)
    .where(pendingAt(services.clock.now()))
    .orderBy('invitations.id', 'desc')
    .execute();
  return rows.map(invitationView);
}

/** `DELETE /organizations/{uuid}/invitations/{invitation_uuid}`: only a pending invitation; its link dies. */
export async function revokeInvitation(
  services: Services,
  access: OrganizationAccess,
  invitationUuid: string,
  context: RequestContext,
): Promise<void> {
  if (!isUuid(invitationUuid)) throw new AppError('NOT_FOUND', { detail: 'No pending invitation with this id' });
  const now = services.clock.now();
  await services.db.transaction().execute(async (trx) => {
    const [revoked] = await revokePending(trx, access.organizationId, { uuid: invitationUuid.toLowerCase() }, now);
    if (!revoked) throw new AppError('NOT_FOUND', { detail: 'No pending invitation with this id' });
    await recordAudit(
      trx,
      {
        action: 'invitation_revoked',
        userId: access.userId,
        organizationId: access.organizationId,
        details: { invitation_uuid: revoked },
      },
      context,
    );
  });
}

/** What a live invitation link offers, as its page shows it before accepting. */
export interface InvitationOffer {
  organizationName: string;
  role: string;
  email: string;
}

/** The pending invitation behind a link, or undefined when the link is unknown, spent, revoked or expired. */
export async function describeInvitation(services: Services, token: unknown): Promise<InvitationOffer | undefined> {
  if (!isLinkTokenShaped(token)) return undefined;
  const now = services.clock.now();
  const live = await findLiveToken(services.db, 'invitation', token, now);
  if (!live?.invitationId) return undefined;
  const row = await services.db
    .selectFrom('invitations')
    .innerJoin('organizations', 'organizations.id', 'invitations.organization_id')
    .innerJoin('roles', 'roles.id', 'invitations.role_id')
    .select(['organizations.name', 'roles.name as role', 'invitations.email'])
    .where('invitations.id', '=', live.invitationId)
    .where(pendingAt(now))
    .executeTakeFirst();
  if (!row) return undefined;
  return { organizationName: row.name, role: row.role, email: row.email };
}

/**
 * `POST /invitations/accept`: the signed-in user joins with the invited role.
 * Their verified email must be the invited one. The token is spent only on
 * success (a refusal rolls the spend back), so the right person can still
 * use a link someone else opened first.
 */
export async function acceptInvitation(
  services: Services,
  auth: AuthContext,
  token: string,
  context: RequestContext,
): Promise<OrganizationView> {
  const now = services.clock.now();
  const access = await services.db.transaction().execute(async (trx) => {
    const live = await findLiveToken(trx, 'invitation', token, now);
    if (!live?.invitationId) throw invalidInvitation();
    const target = await trx
      .selectFrom('invitations')
      .select('organization_id')
      .where('id', '=', live.invitationId)
      .executeTakeFirst();
    // Under the organization lock, a concurrent accept, revoke or deletion has either finished or not begun.
    if (!target || !(await lockOrganization(trx, target.organization_id))) throw invalidInvitation();
    const invitation = await trx
      .selectFrom('invitations')
      .innerJoin('roles', 'roles.id', 'invitations.role_id')
      .select([
        'invitations.id',
        'invitations.uuid',
        'invitations.organization_id',
        'invitations.email',
        'invitations.role_id',
        'roles.name as role',
      ])
      .where('invitations.id', '=', live.invitationId)
      .where(pendingAt(now))
      .executeTakeFirst();
    if (!invitation?.role_id) throw invalidInvitation();

    const user = await trx
      .selectFrom('users')
      .select(['id', 'email', 'email_verified_at'])
      .where('id', '=', auth.userId)
      .executeTakeFirst();
    if (!user) throw new AppError('TOKEN_INVALID', { detail: 'The account no longer exists' });
    if (user.email !== invitation.email) {
      throw new AppError('FORBIDDEN', { detail: 'This invitation was sent to a different email address' });
    }
    if (user.email_verified_at === null) {
      throw new AppError('EMAIL_NOT_VERIFIED', { detail: 'Verify your email address before accepting an invitation' });
    }
    if (await isMember(trx, invitation.organization_id, user.id))
      throw new AppError('CONFLICT', { detail: 'You are already a member of this organization' });

    // The spend is the single-use guarantee: of two concurrent accepts exactly one gets the token.
    if (!(await spendOneTimeToken(trx, 'invitation', token, now))) throw invalidInvitation();
    const accepted = await trx
      .updateTable('invitations')
      .set({ accepted_at: now, accepted_by: user.id })
      .where('id', '=', invitation.id)
      .where('accepted_at', 'is', null)
      .where('revoked_at', 'is', null)
      .returning('id')
      .executeTakeFirst();
    if (!accepted) throw invalidInvitation();
    await trx
      .insertInto('memberships')
      .values({ user_id: user.id, organization_id: invitation.organization_id, role_id: invitation.role_id })
      .execute();
    await recordAudit(
      trx,
      {
        action: 'invitation_accepted',
        userId: user.id,
        organizationId: invitation.organization_id,
        details: { invitation_uuid: invitation.uuid, role: invitation.role },
      },
      context,
    );
    const organization = await trx
      .selectFrom('organizations')
      .select('uuid')
      .where('id', '=', invitation.organization_id)
      .executeTakeFirstOrThrow();
    return findMembership(trx, user.id, organization.uuid);
  });
  if (!access) throw invalidInvitation();
  return getOrganization(services, access);
}
