import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { loginWithPassword } from '../../src/flows/login.ts';
import { json, newUser, startApp, strongPassword, uniqueName } from '../helpers.ts';

/**
 * Property-based fuzzing of every endpoint in /openapi.json (so a new route
 * is covered the day it is added) and of the HTML pages: generated bodies,
 * media types, headers, path and query values and tokens. Each answer must
 * be below 500, match the OpenAPI schema of its status, come as JSON or
 * problem+json (HTML only from pages), and never echo generated markup raw.
 *
 * FUZZ_RUNS scales the random phase, FUZZ_SEED replays a failure.
 */
const RUNS_PER_OPERATION = Number(process.env.FUZZ_RUNS_PER_OPERATION ?? 20);
const RANDOM_RUNS = Number(process.env.FUZZ_RUNS ?? 1000);
const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;

/** Markup a careless template would echo; none may appear raw in an HTML answer. */
const MARKUP = [
  '<script>alert("gh-xss")</script>',
  '"><img src=x onerror=alert("gh-xss")>',
  "'><svg onload=alert('gh-xss')>",
  '</textarea><script>alert("gh-xss")</script>',
  'javascript:alert("gh-xss")',
];
const RAW_MARKUP = [
  /<script>alert\(/i,
  /<img src=x onerror/i,
  /<svg onload/i,
  /(href|action|src)\s*=\s*["']?\s*javascript:/i,
];

/** The pages of API.md: not in the OpenAPI document, fuzzed through their own forms. */
const PAGES = [
  '/register',
  '/login',
  '/login/mfa',
  '/logout',
  '/forgot-password',
  '/reset-password',
  '/verify-email',
  '/account',
  '/account/mfa',
  '/account/email/confirm',
  '/account/email/revert',
  '/account/passkeys',
  '/account/passkeys/options',
  '/login/passkey',
  '/login/passkey/options',
  '/login/mfa/passkey-options',
];

type Schema = Record<string, unknown>;

interface Operation {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';
  /** OpenAPI template, `/api/v1/organizations/{uuid}`. */
  path: string;
  pathParams: string[];
  queryParams: string[];
  bodyFields: string[];
  mediaTypes: string[];
  /** Status → response validator; undefined when the status has no body. Absent for pages. */
  responses?: Map<string, ValidateFunction | undefined>;
  page: boolean;
}

interface Attempt {
  /** `METHOD path`: a key of the operations, so that a counterexample prints short. */
  op: string;
  pathValues: string[];
  query: Record<string, string>;
  body:
    | { kind: 'fields'; fields: Record<string, unknown> }
    | { kind: 'json'; value: unknown }
    | { kind: 'raw'; text: string }
    | { kind: 'none' };
  contentType: string | undefined;
  auth: string;
  garbageToken: string;
  headers: Record<string, string>;
}

describe('fuzzing every endpoint', () => {
  let app: FastifyInstance;
  let dataDir: string;
  let operations: Operation[];
  const byKey = new Map<string, Operation>();
  const operation = (a: Attempt) => byKey.get(a.op) as Operation;
  const known: {
    uuids: string[];
    tokens: string[];
    user?: { identifier: string; password: string };
    admin?: { identifier: string; password: string };
  } = {
    uuids: [],
    tokens: [],
  };

  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-data-'));
    // A cheap hash keeps thousands of logins fast; hashing itself is not what is fuzzed here.
    app = await startApp({
      PASSWORD_HASHER: 'bcrypt',
      BCRYPT_ROUNDS: '4',
      DATA_DIR: dataDir,
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      REQUIRE_EMAIL_VERIFICATION: 'false',
      // Every route of the contract is fuzzed, e-mail sign-in's too.
      EMAIL_SIGN_IN: 'both',
    });
    const plain = newUser({ organization_name: 'Fuzz Org' });
    const admin = newUser();
    for (const user of [plain, admin]) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
      assert.equal(res.statusCode, 201, res.body);
      const body = json<{ uuid: string; organization: { uuid: string } | null }>(res);
      known.uuids.push(body.uuid);
      if (body.organization) known.uuids.push(body.organization.uuid);
      const login = await app.inject({
        method: 'POST',
        url: '/api/v1/login/json',
        payload: { username: user.username, password: user.password },
      });
      const tokens = json<{ access_token: string; refresh_token: string }>(login);
      known.tokens.push(tokens.access_token, tokens.refresh_token);
    }
    await app.gatehouse.db
      .updateTable('users')
      .set({ is_superuser: true })
      .where('username', '=', String(admin.username))
      .execute();
    known.user = { identifier: String(plain.username), password: String(plain.password) };
    known.admin = { identifier: String(admin.username), password: String(admin.password) };

    operations = [...documentedOperations(json(await app.inject('/openapi.json'))), ...pageOperations()];
    for (const op of operations) byKey.set(`${op.method} ${op.path}`, op);
  });
  after(async () => {
    await app?.close();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  });

  /**
   * A fresh session of the known user or superuser. A fuzzed administration
   * call may have deleted, disabled or demoted them: a new account then takes
   * their place (a superuser again for `admin`).
   */
  async function signIn(who: 'user' | 'admin', context: { ip: string; userAgent: string }): Promise<string> {
    const account = known[who]!;
    const row = await app.gatehouse.db
      .selectFrom('users')
      .select(['is_active', 'is_superuser'])
      .where('username', '=', account.identifier)
      .executeTakeFirst();
    if (!row?.is_active || (who === 'admin' && !row.is_superuser)) {
      const user = newUser();
      const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
      assert.equal(res.statusCode, 201, res.body);
      if (who === 'admin') {
        await app.gatehouse.db
          .updateTable('users')
          .set({ is_superuser: true })
          .where('username', '=', String(user.username))
          .execute();
      }
      known[who] = { identifier: String(user.username), password: String(user.password) };
    }
    return (await loginWithPassword(app.gatehouse, known[who]!, context)).tokens.access_token;
  }

  /** A fresh session each time: fuzzed logouts and revocations must not starve later runs. */
  async function bearer(kind: string, garbage: string): Promise<string | undefined> {
    const context = { ip: '127.0.0.1', userAgent: 'fuzz' };
    switch (kind) {
      case 'user':
        return signIn('user', context);
      case 'superuser':
        return signIn('admin', context);
      case 'refresh':
        return known.tokens[1];
      case 'tampered': {
        const token = known.tokens[0] as string;
        return `${token.slice(0, -3)}${token.at(-3) === 'A' ? 'B' : 'A'}${token.slice(-2)}`;
      }
      case 'alg-none': {
        const [, payload] = (known.tokens[0] as string).split('.');
        return `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${payload}.`;
      }
      case 'garbage':
        return garbage;
      default:
        return undefined;
    }
  }

  function text(): fc.Arbitrary<string> {
    return fc.oneof(
      { weight: 4, arbitrary: fc.string() },
      { weight: 2, arbitrary: fc.string({ unit: 'grapheme' }) },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
      { weight: 3, arbitrary: fc.constantFrom(...MARKUP) },
      { weight: 2, arbitrary: fc.emailAddress() },
      { weight: 1, arbitrary: fc.uuid() },
      {
        weight: 2,
        arbitrary: fc.constantFrom(...known.uuids, ...known.tokens, strongPassword(), 'password', 'refresh_token'),
      },
      {
        weight: 1,
        arbitrary: fc.constantFrom(
          'a'.repeat(300),
          'x'.repeat(20_000),
          '\u0000',
          '\ud800',
          'Ａｄｍｉｎ',
          '../../etc/passwd',
        ),
      },
    );
  }

  function value(): fc.Arbitrary<unknown> {
    return fc.oneof(
      { weight: 6, arbitrary: text() },
      { weight: 1, arbitrary: fc.integer() },
      { weight: 1, arbitrary: fc.double() },
      { weight: 1, arbitrary: fc.boolean() },
      { weight: 1, arbitrary: fc.constant(null) },
      { weight: 1, arbitrary: fc.array(text(), { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 8 }), text(), { maxKeys: 3 }) },
    );
  }

  const ascii = (maxLength = 60) => fc.string({ unit: 'grapheme-ascii', maxLength });

  function attempt(ops: Operation[]): fc.Arbitrary<Attempt> {
    return fc.constantFrom(...ops).chain((op) =>
      fc.record({
        op: fc.constant(`${op.method} ${op.path}`),
        pathValues: fc.array(fc.oneof(fc.uuid(), fc.constantFrom(...known.uuids), text()), {
          minLength: op.pathParams.length,
          maxLength: op.pathParams.length,
        }),
        query: fc.dictionary(
          op.queryParams.length > 0
            ? fc.oneof(fc.constantFrom(...op.queryParams), fc.string({ maxLength: 8 }))
            : fc.string({ maxLength: 8 }),
          fc.oneof(
            text(),
            fc.integer().map(String),
            fc.constantFrom('true', 'false', '-1', '1e309', '2025-01-01T00:00:00Z'),
          ),
          { maxKeys: 4 },
        ),
        body: fc.oneof(
          {
            weight: 6,
            arbitrary: fc
              .record({
                declared: fc
                  .subarray(op.bodyFields)
                  .chain((names) => fc.tuple(...names.map((name) => fc.tuple(fc.constant(name), value())))),
                extra: fc.dictionary(fc.string({ maxLength: 12 }), value(), { maxKeys: 2 }),
              })
              .map(({ declared, extra }) => ({
                kind: 'fields' as const,
                fields: { ...extra, ...Object.fromEntries(declared) },
              })),
          },
          { weight: 1, arbitrary: fc.jsonValue().map((v) => ({ kind: 'json' as const, value: v })) },
          { weight: 1, arbitrary: fc.string().map((t) => ({ kind: 'raw' as const, text: t })) },
          { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
        ),
        contentType: fc.oneof(
          {
            weight: 6,
            arbitrary: fc.constantFrom(...(op.mediaTypes.length > 0 ? op.mediaTypes : ['application/json'])),
          },
          {
            weight: 2,
            arbitrary: fc.constantFrom(
              'application/json',
              'application/x-www-form-urlencoded',
              'text/plain',
              'application/json; charset=utf-16',
              'multipart/form-data; boundary=x',
              'application/xml',
              'APPLICATION/JSON',
            ),
          },
          { weight: 1, arbitrary: ascii(40) },
          { weight: 1, arbitrary: fc.constant(undefined) },
        ),
        auth: fc.constantFrom('none', 'user', 'user', 'superuser', 'refresh', 'tampered', 'alg-none', 'garbage'),
        garbageToken: fc.oneof(
          ascii(),
          fc.constantFrom('Bearer', 'Bearer ', 'Basic dXNlcjpwYXNz', 'Bearer a.b.c', 'bearer  x'),
        ),
        headers: fc.record(
          {
            'user-agent': ascii(200),
            'x-forwarded-for': ascii(),
            accept: fc.constantFrom('text/html', 'application/json', '*/*', 'application/problem+json'),
            cookie: ascii(),
            'sec-fetch-site': fc.constantFrom('same-origin', 'cross-site', 'none'),
          },
          { requiredKeys: [] },
        ),
      }),
    );
  }

  function url(a: Attempt): string {
    const op = operation(a);
    let path = op.path;
    op.pathParams.forEach((name, i) => {
      path = path.replace(`{${name}}`, pathSegment(a.pathValues[i] ?? ''));
    });
    const query = new URLSearchParams(a.query).toString();
    return query ? `${path}?${query}` : path;
  }

  function payload(a: Attempt): string | undefined {
    const { body } = a;
    if (body.kind === 'none') return undefined;
    if (body.kind === 'raw') return body.text;
    if (body.kind === 'json') return JSON.stringify(body.value);
    if (a.contentType?.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
      const form = new URLSearchParams();
      for (const [k, v] of Object.entries(body.fields)) {
        for (const item of Array.isArray(v) ? v : [v])
          form.append(k, typeof item === 'string' ? item : JSON.stringify(item));
      }
      return form.toString();
    }
    return JSON.stringify(body.fields);
  }

  /** For a page POST: the form's CSRF token and cookie, from a GET of the same page. */
  async function pageSession(path: string): Promise<{ cookie: string; csrf: string | undefined }> {
    const res = await app.inject({ method: 'GET', url: path });
    const setCookie = [res.headers['set-cookie'] ?? []].flat();
    const cookie = setCookie.map((c) => String(c).split(';')[0]).join('; ');
    const csrf = /name="csrf_token" value="([^"]*)"/.exec(res.body)?.[1];
    return { cookie, csrf };
  }

  async function send(a: Attempt): Promise<LightMyRequestResponse> {
    const headers: Record<string, string> = { ...a.headers };
    const token = await bearer(a.auth, a.garbageToken);
    if (a.auth === 'garbage') headers.authorization = token ?? '';
    else if (token) headers.authorization = `Bearer ${token}`;
    if (a.contentType !== undefined) headers['content-type'] = a.contentType;
    let body = payload(a);
    const op = operation(a);
    if (op.page && op.method === 'POST') {
      const session = await pageSession(op.path);
      if (session.cookie) headers.cookie = session.cookie;
      delete headers['sec-fetch-site'];
      headers['content-type'] = 'application/x-www-form-urlencoded';
      const fields = a.body.kind === 'fields' ? a.body.fields : {};
      const form = new URLSearchParams();
      for (const [k, v] of Object.entries(fields)) form.append(k, typeof v === 'string' ? v : JSON.stringify(v));
      if (session.csrf) form.set('csrf_token', session.csrf);
      body = form.toString();
    }
    const options: InjectOptions = { method: op.method, url: url(a), headers };
    if (body !== undefined && op.method !== 'GET') options.payload = body;
    return app.inject(options);
  }

  function check(a: Attempt, res: LightMyRequestResponse): void {
    const op = operation(a);
    const where = `${op.method} ${url(a).slice(0, 200)} → ${res.statusCode}`;
    assert.ok(res.statusCode < 500, `${where}: ${res.body.slice(0, 500)}`);
    const type = String(res.headers['content-type'] ?? '');
    if (/text\/html/i.test(type)) {
      assert.ok(op.page || op.path.startsWith('/docs'), `${where}: HTML from an API route`);
      for (const pattern of RAW_MARKUP) assert.doesNotMatch(res.body, pattern, `${where}: markup echoed raw`);
    } else if (res.body.length > 0 && op.path !== '/metrics') {
      assert.match(type, /^application\/(problem\+)?json/, `${where}: content-type ${type}`);
    }
    if (!op.responses) return;
    // A route lists its own statuses; 4XX and 5XX (problem details) stand for the error statuses it does not.
    const exact = String(res.statusCode);
    const range = `${exact[0]}XX`;
    const status = op.responses.has(exact) ? exact : range;
    assert.ok(op.responses.has(status), `${where}: status not in the OpenAPI document: ${res.body.slice(0, 300)}`);
    const validate = op.responses.get(status);
    if (validate && res.body.length > 0) {
      const body = JSON.parse(res.body) as unknown;
      assert.ok(
        validate(body),
        `${where}: body does not match its schema: ${JSON.stringify(validate.errors)} ${res.body.slice(0, 300)}`,
      );
    }
  }

  const property = (ops: Operation[]) =>
    fc.asyncProperty(attempt(ops), async (a) => {
      check(a, await send(a));
    });

  test('every documented operation and page, a fixed number of times each', async () => {
    assert.ok(operations.filter((o) => !o.page).length >= 10, 'the OpenAPI document lists the API');
    for (const op of operations) {
      await fc.assert(property([op]), { numRuns: RUNS_PER_OPERATION, seed: SEED, endOnFailure: true });
    }
  });

  test('random operations with generated bodies, headers and tokens', async () => {
    await fc.assert(property(operations), { numRuns: RANDOM_RUNS, seed: SEED, endOnFailure: true });
  });

  test("an over-long path parameter answers 404 problem+json, not the router's own 414 body", async () => {
    const res = await app.inject({ method: 'GET', url: `/api/v1/organizations/${'a'.repeat(500)}` });
    assert.equal(res.statusCode, 404, res.body);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(json(res).code, 'NOT_FOUND');
  });

  test('a path that is not valid percent-encoding answers 400 MALFORMED_REQUEST problem+json', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/organizations/%E0%A4%A' });
    assert.equal(res.statusCode, 400, res.body);
    assert.match(String(res.headers['content-type']), /^application\/problem\+json/);
    assert.equal(json(res).code, 'MALFORMED_REQUEST');
  });

  function pageOperations(): Operation[] {
    const problemPage: Operation = {
      method: 'GET',
      path: '/problems/{slug}',
      pathParams: ['slug'],
      queryParams: [],
      bodyFields: [],
      mediaTypes: [],
      page: true,
    };
    return [
      problemPage,
      ...PAGES.flatMap((path) =>
        (['GET', 'POST'] as const).map((method) => ({
          method,
          path,
          pathParams: [],
          queryParams: ['redirect_to', 'token', 'next', 'error'],
          bodyFields: [
            'username',
            'email',
            'password',
            'confirm_password',
            'first_name',
            'last_name',
            'name',
            'organization_name',
            'token',
            'new_password',
            'redirect_to',
            'mfa_token',
            'code',
            'backup_code',
            'action',
            'challenge_id',
            'response',
            'webauthn_response',
            'passkey',
          ],
          mediaTypes: ['application/x-www-form-urlencoded'],
          page: true,
        })),
      ),
    ];
  }
});

/** Percent-encoded; a lone surrogate goes out as the invalid UTF-8 it would be, to fuzz the decoder. */
function pathSegment(value: string): string {
  if (value === '') return 'x';
  try {
    return encodeURIComponent(value);
  } catch {
    return '%ED%A0%80';
  }
}

interface OpenApiOperation {
  parameters?: { in: string; name: string }[];
  requestBody?: { content: Record<string, { schema?: Schema }> };
  responses?: Record<string, { content?: Record<string, { schema?: Schema }> }>;
}

/** Every operation of the document, with an ajv validator per documented response. */
function documentedOperations(doc: {
  paths: Record<string, Record<string, OpenApiOperation>>;
  components?: Schema;
}): Operation[] {
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats.default(ajv);
  const operations: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const responses = new Map<string, ValidateFunction | undefined>();
      for (const [status, response] of Object.entries(op.responses ?? {})) {
        const schema = Object.values(response.content ?? {})[0]?.schema;
        // Local refs (#/components/...) resolve against this root.
        responses.set(status, schema ? ajv.compile({ ...schema, components: doc.components }) : undefined);
      }
      const content = op.requestBody?.content ?? {};
      const bodySchema = Object.values(content)[0]?.schema as { properties?: Schema } | undefined;
      operations.push({
        method: method.toUpperCase() as Operation['method'],
        path,
        pathParams: (op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name),
        queryParams: (op.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name),
        bodyFields: Object.keys(bodySchema?.properties ?? {}),
        mediaTypes: Object.keys(content),
        responses,
        page: false,
      });
    }
  }
  return operations;
}
