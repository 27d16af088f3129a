import { AppError } from './errors.ts';

/** Keyset pagination of the list endpoints: newest first, `{items, next_cursor}`. */
/** Rows per page when a list call names no `limit`. */
export const DEFAULT_PAGE_SIZE = 50;

export interface Page<T> {
  items: T[];
  /** Pass as `cursor` for the next page; null on the last page. */
  next_cursor: string | null;
}

/** Opaque keyset cursor: the last id of the page, newest first. */
function encodeCursor(id: number): string {
  return Buffer.from(`id:${id}`).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  const m = /^id:(\d{1,15})$/.exec(Buffer.from(cursor, 'base64url').toString());
  if (!m) {
    throw new AppError('VALIDATION_ERROR', {
      detail: 'One or more fields are invalid',
      errors: [{ field: 'cursor', message: 'Cursor is not one this API returned', code: 'cursor' }],
    });
  }
  return Number(m[1]);
}

/** One keyset page from a query that read `limit + 1` rows: the extra row says whether a next page exists. */
export function pageOf<T extends { id: number }, V>(rows: T[], limit: number, view: (row: T) => V): Page<V> {
  const more = rows.length > limit;
  const kept = more ? rows.slice(0, limit) : rows;
  return { items: kept.map(view), next_cursor: more ? encodeCursor(kept[kept.length - 1]!.id) : null };
}
