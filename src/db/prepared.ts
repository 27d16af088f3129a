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

type Query = (...args: unknown[]) => unknown;

/** A pg client that runs registered SQL texts under their statement names. */
export class PreparingClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    const query = this.query.bind(this) as Query;
    // pg's query() has a dozen overloads: wrap the bound method rather than re-declare each one.
    this.query = ((text: unknown, values?: unknown, callback?: unknown) => {
      const name = typeof text === 'string' ? names.get(text) : undefined;
      if (name && Array.isArray(values)) return query({ name, text, values }, callback);
      return callback === undefined ? query(text, values) : query(text, values, callback);
    }) as pg.Client['query'];
  }
}
