import { type Compilable, CompiledQuery, type Kysely } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';

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

const BOUND = '\u0000bound:';

/** Stands in for a value while a cached statement is built; serialized into JSON, it leaves a marker. */
class Bound {
  readonly name: string;
  constructor(name: string) {
    this.name = name;
  }
  toJSON(): string {
    return `${BOUND}${this.name}\u0000`;
  }
}

/** Where each parameter of a cached statement comes from. */
type Slot =
  | { kind: 'fixed'; value: unknown }
  | { kind: 'bound'; name: string }
  /** A JSON text with bound values inside (an audit row's details): filled by replacing each marker. */
  | { kind: 'json'; text: string; names: string[] };

/** Stands in for the run-time value `name` while the statement is built. */
export type Binder<V> = <K extends keyof V & string>(name: K) => V[K];

/**
 * A hot statement that Kysely builds and compiles once per shape instead of
 * on every call, then runs as a prepared statement. `build` gets `bind`,
 * which stands in for a value given at run time (also inside an object that
 * is serialized to JSON); anything else in the statement is fixed for the
 * shape, so whatever differs between calls, or between instances with other
 * settings, must be bound or named by the shape.
 */
export class CachedStatement<S extends string, V extends Record<string, unknown>, R> {
  readonly #build: (db: Kysely<Database>, bind: Binder<V>, shape: S) => Compilable<R>;
  readonly #templates = new Map<S, { sql: string; slots: Slot[] }>();

  constructor(build: (db: Kysely<Database>, bind: Binder<V>, shape: S) => Compilable<R>) {
    this.#build = build;
  }

  async execute(db: Kysely<Database>, shape: S, values: V): Promise<R[]> {
    let template = this.#templates.get(shape);
    if (!template) {
      template = compileTemplate(this.#build(db, (name) => new Bound(name) as never, shape).compile());
      this.#templates.set(shape, template);
    }
    const parameters = template.slots.map((slot) => {
      if (slot.kind === 'fixed') return slot.value;
      if (slot.kind === 'bound') return boundValue(values, slot.name);
      let text = slot.text;
      for (const name of slot.names) {
        text = text.replaceAll(JSON.stringify(new Bound(name)), JSON.stringify(boundValue(values, name)));
      }
      return text;
    });
    const { rows } = await db.executeQuery(prepared(CompiledQuery.raw(template.sql, parameters) as CompiledQuery<R>));
    return rows;
  }
}

function boundValue(values: Record<string, unknown>, name: string): unknown {
  const value = values[name];
  if (value === undefined) throw new Error(`no value bound for "${name}"`);
  return value;
}

/** A bound value's marker as JSON.stringify writes it into a text. */
const MARKER = /\\u0000bound:(.*?)\\u0000/g;

function compileTemplate(query: CompiledQuery): { sql: string; slots: Slot[] } {
  const slots = query.parameters.map((value): Slot => {
    if (value instanceof Bound) return { kind: 'bound', name: value.name };
    if (typeof value === 'string') {
      const names = [...value.matchAll(MARKER)].map((m) => m[1] as string);
      if (names.length > 0) return { kind: 'json', text: value, names };
    }
    return { kind: 'fixed', value };
  });
  return { sql: query.sql, slots };
}
