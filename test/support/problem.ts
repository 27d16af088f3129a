import assert from 'node:assert/strict';
import { json } from '../helpers.ts';

/** A response as `app.inject` answers it. */
export interface InjectedResponse {
  statusCode: number;
  headers: Record<string, unknown>;
  body: string;
}

/**
 * Asserts an RFC 9457 problem response: the HTTP status, the
 * application/problem+json content type, Gatehouse's stable `code`, and the
 * problem members `type` (`/problems/<code in kebab case>`), `title`,
 * `status` (the HTTP status again) and `detail`. Returns the parsed body.
 */
export function assertProblem(res: InjectedResponse, status: number, code: string): Record<string, unknown> {
  assert.equal(res.statusCode, status, res.body);
  assert.match(String(res.headers['content-type']), /^application\/problem\+json/, res.body);
  const body = json(res);
  assert.equal(body.code, code, res.body);
  assert.equal(body.status, status, res.body);
  assert.equal(body.type, `/problems/${code.toLowerCase().replaceAll('_', '-')}`, res.body);
  assert.equal(typeof body.title, 'string', res.body);
  assert.equal(typeof body.detail, 'string', res.body);
  return body;
}
