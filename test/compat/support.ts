import assert from 'node:assert/strict';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { json, uniqueName } from '../helpers.ts';

/** Every document's request is sent with the same few headers its examples use. */
export const JSON_HEADERS = { 'content-type': 'application/json' };
export const FORM_HEADERS = { 'content-type': 'application/x-www-form-urlencoded' };

/** A name unique across runs on a shared database, in the lower case the documents' examples use. */
export function exampleName(base: string): string {
  return `${base}_${uniqueName('x').split('_')[1]}`;
}

/** Send one request; the answer's status and its JSON body. */
export async function send(
  app: FastifyInstance,
  request: InjectOptions,
): Promise<{ status: number; body: Record<string, unknown>; headers: Record<string, unknown>; raw: string }> {
  const res = await app.inject(request);
  const type = String(res.headers['content-type'] ?? '');
  const body = type.includes('json') && res.body !== '' ? json(res) : {};
  return { status: res.statusCode, body, headers: res.headers, raw: res.body };
}

/** The members of `body` are exactly `keys` (in any order). */
export function assertKeys(body: unknown, keys: string[], message?: string): void {
  assert.ok(typeof body === 'object' && body !== null, message);
  assert.deepEqual(Object.keys(body as object).sort(), [...keys].sort(), message);
}
