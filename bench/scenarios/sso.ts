import { randomBytes } from 'node:crypto';
import { HttpBrowser } from '../../test/support/http-browser.ts';
import { freePort } from '../../test/support/ports.ts';
import { UpstreamIdp } from '../../test/support/upstream-idp.ts';
import {
  alternatingRounds,
  type BenchResult,
  createDatabase,
  expectStatus,
  gatehouseEnv,
  postJson,
  round,
  startServer,
  uniqueUser,
} from '../lib.ts';

const HASH_CONCURRENCY = 1;
const ROUNDS = 3;
const PER_ROUND = 200;
const CONCURRENCY = 4;

/**
 * A sign-in through another identity provider for a person it already knows
 * and who is signed in there: `GET /api/v1/sso/acme/start` (a state row),
 * the provider's authorize answering straight with a code, then
 * `GET …/callback` (the state spent, the code exchanged at the provider, the
 * ID token's RS256 signature checked against its JWKS, the identity found,
 * a session written). The provider is a real `oidc-provider` in the bench
 * process. Against password logins on the same Gatehouse, alternating
 * rounds, median of per-round ratios.
 */
export default async function sso(): Promise<BenchResult[]> {
  const database = await createDatabase();
  const secret = randomBytes(24).toString('base64url');
  const port = await freePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const idp = await UpstreamIdp.start({
    clients: [
      { client_id: 'gatehouse', client_secret: secret, redirect_uris: [`${publicUrl}/api/v1/sso/acme/callback`] },
    ],
  });
  const server = await startServer(
    'gatehouse',
    gatehouseEnv(database.url, {
      HASH_CONCURRENCY: String(HASH_CONCURRENCY),
      SSO_PROVIDERS: 'acme',
      SSO_ACME_CLIENT_ID: 'gatehouse',
      SSO_ACME_CLIENT_SECRET: secret,
      SSO_ACME_ISSUER: idp.issuer,
      RATE_LIMIT_LOGIN: '100000000/1h',
      PORT: String(port),
      PUBLIC_URL: publicUrl,
    }),
  );
  try {
    const person = randomBytes(6).toString('hex');
    idp.accounts[person] = { email: `${person}@example.com`, email_verified: true, name: 'Bench Person' };
    // One browser per worker: each holds its own binding cookie and its session at the provider.
    const idle: HttpBrowser[] = [];
    for (let i = 0; i < CONCURRENCY; i++) {
      const browser = new HttpBrowser();
      const first = await browser.get(`${server.url}/api/v1/sso/acme/start`);
      const page = await browser.open(String(first.headers.get('location')));
      await idp.signIn(browser, page, person, `${server.url}/account`);
      idle.push(browser);
    }

    const signIn = async () => {
      const browser = idle.pop() as HttpBrowser;
      try {
        await signInWith(browser);
      } finally {
        idle.push(browser);
      }
    };
    const signInWith = async (browser: HttpBrowser) => {
      const start = await browser.get(`${server.url}/api/v1/sso/acme/start`);
      const authorize = await browser.get(String(start.headers.get('location')));
      const callback = String(authorize.headers.get('location') ?? '');
      if (!callback.startsWith(`${server.url}/api/v1/sso/acme/callback`)) {
        throw new Error(`the provider answered ${authorize.status} → ${callback}`);
      }
      const done = await browser.get(callback);
      if (done.status !== 303 || done.headers.get('location') !== '/account') {
        throw new Error(`callback answered ${done.status}: ${await done.text()}`);
      }
    };
    const account = uniqueUser();
    expectStatus('register', await postJson(`${server.url}/api/v1/register`, account), 201);
    const passwordLogin = async () =>
      expectStatus('password login', await postJson(`${server.url}/api/v1/login`, account), 200);

    const mid = await alternatingRounds({
      rounds: ROUNDS,
      count: PER_ROUND,
      concurrency: CONCURRENCY,
      baseline: passwordLogin,
      candidate: signIn,
    });
    return [
      {
        name: `password logins/s (HASH_CONCURRENCY=${HASH_CONCURRENCY})`,
        value: round(mid.baseline, 1),
        unit: 'logins/s',
      },
      {
        name: 'federated sign-ins/s (start → provider → callback: code exchange, ID token verified, session)',
        value: round(mid.candidate, 1),
        unit: 'sign-ins/s',
        ratio: round(mid.ratio),
        baseline: 'password logins/s on the same server, alternating rounds',
        note: 'three requests per sign-in plus the token request to the provider, which runs in the bench process',
      },
    ];
  } finally {
    await server.close();
    await idp.close();
    await database.drop();
  }
}
