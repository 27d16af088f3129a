import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { json, newUser, startApp, uniqueName } from '../helpers.ts';

let app: FastifyInstance;
before(async () => {
  app = await startApp();
});
after(() => app.close());

const register = (body: Record<string, unknown>) =>
  app.inject({ method: 'POST', url: '/api/v1/register', payload: body });

function tally(statuses: number[]): Record<number, number> {
  const t: Record<number, number> = {};
  for (const s of statuses) t[s] = (t[s] ?? 0) + 1;
  return t;
}

test('50 parallel registrations with one email give exactly one 201 and 409 EMAIL_TAKEN for the rest', async () => {
  const email = `${uniqueName('race')}@example.com`;
  const responses = await Promise.all(
    Array.from({ length: 50 }, (_, i) => register(newUser({ email: i % 2 ? email.toUpperCase() : email }))),
  );
  const t = tally(responses.map((r) => r.statusCode));
  assert.deepEqual(t, { 201: 1, 409: 49 }, JSON.stringify(t));
  for (const r of responses.filter((r) => r.statusCode === 409)) assert.equal(json(r).code, 'EMAIL_TAKEN');
  const rows = await app.gatehouse.db.selectFrom('users').select('id').where('email', '=', email).execute();
  assert.equal(rows.length, 1);
});

test('50 parallel registrations with one username in different case give exactly one 201', async () => {
  const username = uniqueName('Race');
  const variants = [username, username.toLowerCase(), username.toUpperCase()];
  const responses = await Promise.all(
    Array.from({ length: 50 }, (_, i) => register(newUser({ username: variants[i % 3] }))),
  );
  const t = tally(responses.map((r) => r.statusCode));
  assert.deepEqual(t, { 201: 1, 409: 49 }, JSON.stringify(t));
  for (const r of responses.filter((r) => r.statusCode === 409)) assert.equal(json(r).code, 'USERNAME_TAKEN');
});

test('parallel registrations naming the same organization get distinct slugs', async () => {
  const name = `Race Org ${uniqueName()}`;
  const responses = await Promise.all(Array.from({ length: 10 }, () => register(newUser({ organization_name: name }))));
  assert.deepEqual(tally(responses.map((r) => r.statusCode)), { 201: 10 });
  const slugs = responses.map((r) => (json(r).organization as { slug: string }).slug);
  assert.equal(new Set(slugs).size, 10);
});
