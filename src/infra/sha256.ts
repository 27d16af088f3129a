import { createHash } from 'node:crypto';

/** Hex SHA-256: how one-time tokens, refresh-token ids and cookie bindings are stored and compared. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value).digest('hex');
}
