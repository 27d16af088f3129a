import { type Kysely, sql } from 'kysely';

/**
 * Lockouts per account and per source: `identifier` becomes the subject
 * (`user:<id>` for an account, whichever identifier was typed;
 * `name:<identifier>` for a name without one) and `source` says where the
 * attempts came from (`untrusted`, `device:<id>`, `session:<uuid>`).
 * Rows of the old per-identifier shape are carried over as untrusted: an
 * account's username and email rows merge into its `user:` row.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table lockouts add column source text not null default 'untrusted'`.execute(db);
  await sql`alter table lockouts drop constraint lockouts_pkey`.execute(db);
  await sql`update lockouts set identifier = 'name:' || identifier`.execute(db);
  await sql`
    insert into lockouts (identifier, source, failures, lock_count, locked_until, updated_at)
    select 'user:' || u.id, 'untrusted',
      case when max(l.locked_until) > now() then 0 else max(l.failures) end,
      max(l.lock_count), max(l.locked_until), max(l.updated_at)
    from lockouts l join users u on l.identifier in ('name:' || u.username, 'name:' || u.email)
    group by u.id`.execute(db);
  await sql`
    delete from lockouts l using users u
    where l.identifier in ('name:' || u.username, 'name:' || u.email)`.execute(db);
  await sql`alter table lockouts add primary key (identifier, source)`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`delete from lockouts where source <> 'untrusted' or identifier not like 'name:%'`.execute(db);
  await sql`update lockouts set identifier = substr(identifier, 6)`.execute(db);
  await sql`alter table lockouts drop constraint lockouts_pkey`.execute(db);
  await sql`alter table lockouts drop column source`.execute(db);
  await sql`alter table lockouts add primary key (identifier)`.execute(db);
}
