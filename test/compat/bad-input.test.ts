import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { COMPAT_ROUTES } from '../../src/domain/compat.ts';
import { startApp, uniqueName } from '../helpers.ts';

/**
 * Every alias of every profile, fed generated bodies (JSON values of any
 * shape, form strings, broken JSON, wrong media types, long and hostile
 * strings): never a 500, always a JSON answer (or piccolo's empty redirect).
 */
const FIELDS = [
  'username',
  'email',
  'password',
  'confirm_password',
  'hashed_password',
  'name',
  'refresh_token',
  'token',
  'grant_type',
  'language_code',
  'current_password',
  'new_password',
  '__proto__',
  'constructor',
];

const value = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    'a@b.c',
    'x'.repeat(5000),
    '<script>alert(1)</script>',
    'Tangerine#Sky42!',
    'refresh_token',
  ),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
);
const body = fc.oneof(
  fc.record({
    kind: fc.constant('json' as const),
    value: fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 6 }),
  }),
  fc.record({ kind: fc.constant('json' as const), value: fc.oneof(fc.jsonValue(), fc.constant([])) }),
  fc.record({
    kind: fc.constant('form' as const),
    value: fc.dictionary(fc.constantFrom(...FIELDS), fc.string({ maxLength: 30 }), { maxKeys: 6 }),
  }),
  fc.record({ kind: fc.constant('raw' as const), value: fc.constantFrom('{"email":', 'username=%zz', '\u0000', '') }),
);
const mediaType = fc.constantFrom(
  'application/json',
  'application/x-www-form-urlencoded',
  'text/plain',
  'multipart/form-data; boundary=x',
  undefined,
);

async function fuzz(app: FastifyInstance, routes: string[]): Promise<void> {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...routes),
      body,
      mediaType,
      fc.boolean(),
      async (route, generated, type, bearer) => {
        const [method, url] = route.split(' ') as ['GET' | 'POST', string];
        let payload: string | undefined;
        if (generated.kind === 'json') payload = JSON.stringify(generated.value);
        else if (generated.kind === 'form')
          payload = new URLSearchParams(generated.value as Record<string, string>).toString();
        else payload = generated.value;
        const headers: Record<string, string> = {};
        if (type) headers['content-type'] = type;
        if (bearer) headers.authorization = 'Bearer e30.e30.x';
        const res = await app.inject({ method, url, headers, ...(method === 'POST' && { payload }) });
        assert.ok(
          res.statusCode < 500,
          `${route} ${type} ${payload?.slice(0, 200)} → ${res.statusCode} ${res.body.slice(0, 300)}`,
        );
        if (res.statusCode === 303) return;
        const contentType = String(res.headers['content-type'] ?? '');
        // A form post that is not a program's (one with the CSRF cookie) still gets the page.
        if (contentType.startsWith('text/html')) return;
        assert.match(contentType, /json/, `${route} → ${res.statusCode} ${contentType}`);
        JSON.parse(res.body);
      },
    ),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
  );
}

describe('COMPAT aliases never answer 500 to bad input', () => {
  let app: FastifyInstance;
  let piccolo: FastifyInstance;
  before(async () => {
    const common = { PASSWORD_HASHER: 'bcrypt', BCRYPT_ROUNDS: '4', REQUIRE_EMAIL_VERIFICATION: 'false' };
    app = await startApp({
      ...common,
      COMPAT: 'depin,fastpy,simple-endpoints,fastapi-tutorial',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
    piccolo = await startApp({ ...common, COMPAT: 'piccolo', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(async () => {
    await app?.close();
    await piccolo?.close();
  });

  test('depin, fastpy, simple-endpoints, fastapi-tutorial and /api/v1 under depin', async () => {
    const routes = [
      ...COMPAT_ROUTES.fastpy,
      ...COMPAT_ROUTES['simple-endpoints'],
      ...COMPAT_ROUTES['fastapi-tutorial'],
      'POST /api/v1/register',
      'POST /api/v1/login',
      'GET /api/v1/me',
    ];
    await fuzz(app, routes);
  });

  test('piccolo', async () => {
    await fuzz(piccolo, [...COMPAT_ROUTES.piccolo, 'POST /register/']);
  });
});
