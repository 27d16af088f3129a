import type { Compilable, CompiledQuery, Kysely } from 'kysely';
import pg from 'pg';

/**
 * Hot statements run as named prepared statements on PostgreSQL: each
 * connection parses and plans them once instead of on every call. Only the
 * statements registered here are prepared, so the number of prepared
 * statements per connection stays small and fixed whatever SQL else runs.
 */
const names = new Map<string, string>();

/** Marks a compiled query's SQL text as prepared; returns the query unchanged. */
export function prepared<R>(query: CompiledQuery<R>): CompiledQuery<R> {
  if (!names.has(query.sql)) names.set(query.sql, `gatehouse_${names.size + 1}`);
  return query;
}

/**
 * Runs a hot query as a prepared statement; returns its rows. For queries
 * whose SQL text takes only a few shapes: values are bound, never inlined.
 */
export async function executePrepared<DB, R>(db: Kysely<DB>, query: Compilable<R>): Promise<R[]> {
  const { rows } = await db.executeQuery(prepared(query.compile()));
  return rows;
}

type QueryArgs = Parameters<pg.Client['query']>;

/** A pg client that runs registered SQL texts under their statement names. */
export class PreparingClient extends pg.Client {
  // biome-ignore lint/suspicious/noExplicitAny: pg's query() overloads cannot be re-declared one by one.
  override query(...args: any[]): any {
    const [text, values, callback] = args as [unknown, unknown, unknown];
    const name = typeof text === 'string' ? names.get(text) : undefined;
    if (name && Array.isArray(values)) {
      return (super.query as (...a: unknown[]) => unknown)({ name, text, values }, callback);
    }
    return (super.query as (...a: QueryArgs) => unknown)(...(args as QueryArgs));
  }
}
