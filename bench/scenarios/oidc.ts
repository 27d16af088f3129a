import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import { HttpBrowser, signInOnPage } from '../../test/support/http-browser.ts';
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
const CALLBACK = 'http://127.0.0.1:9/callback';

/**
 * A product's sign-in through Gatehouse's OpenID provider for a person
 * already signed in (single sign-on, a first-party client): `GET
 * /oauth/authorize` answered straight with a code, then the code exchanged
 * at `POST /oauth/token` (PKCE, client_secret_basic): state read and written
 * in the database on both, an ID token signed (RS256). Against password
 * logins on the same server, alternating rounds, median of per-round ratios.
 */
export default async function oidc(): Promise<BenchResult[]> {
  const database = await createDatabase();
  const server = await startServer(
    'gatehouse',
    gatehouseEnv(database.url, { HASH_CONCURRENCY: String(HASH_CONCURRENCY), OIDC_PROVIDER: 'true' }),
  );
  const api = `${server.url}/api/v1`;
  try {
    const clientId = randomBytes(12).toString('base64url');
    const secret = randomBytes(32).toString('base64url');
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    await db.query(
      `insert into oauth_clients (client_id, client_secret_hash, client_name, redirect_uris, token_endpoint_auth_method, grant_types, scope, first_party)
       values ($1, $2, 'Bench product', $3, 'client_secret_basic', '["authorization_code","refresh_token"]', 'openid profile email', true)`,
      [clientId, createHash('sha256').update(secret).digest('hex'), JSON.stringify([CALLBACK])],
    );
    await db.end();
    const basic = `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;

    const account = uniqueUser();
    expectStatus('register', await postJson(`${api}/register`, account), 201);
    const browser = new HttpBrowser();
    const authorizeUrl = () => {
      const verifier = randomBytes(32).toString('base64url');
      const url = new URL(`${server.url}/oauth/authorize`);
      url.search = new URLSearchParams({
        client_id: clientId,
        response_type: 'code',
        redirect_uri: CALLBACK,
        scope: 'openid email',
        state: randomBytes(8).toString('base64url'),
        nonce: randomBytes(8).toString('base64url'),
        code_challenge: createHash('sha256').update(verifier).digest('base64url'),
        code_challenge_method: 'S256',
      }).toString();
      return { url: url.href, verifier };
    };
    // The one sign-in with a password: the login page, as a browser would.
    const first = authorizeUrl();
    const page = await browser.open(first.url, CALLBACK);
    await signInOnPage(browser, page, account, CALLBACK);

    const signIn = async () => {
      const { url, verifier } = authorizeUrl();
      const answer = await browser.get(url);
      const location = answer.headers.get('location') ?? '';
      const code = location.startsWith(CALLBACK) ? new URL(location).searchParams.get('code') : null;
      if (!code) throw new Error(`authorize answered ${answer.status} → ${location}`);
      const token = await fetch(`${server.url}/oauth/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: CALLBACK,
          code_verifier: verifier,
        }),
      });
      const body = (await token.json()) as Record<string, unknown>;
      if (token.status !== 200 || typeof body.id_token !== 'string') {
        throw new Error(`token answered ${token.status}: ${JSON.stringify(body)}`);
      }
    };
    const passwordLogin = async () => expectStatus('password login', await postJson(`${api}/login`, account), 200);

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
        name: 'OpenID sign-ins/s (GET /oauth/authorize → code → POST /oauth/token, single sign-on)',
        value: round(mid.candidate, 1),
        unit: 'sign-ins/s',
        ratio: round(mid.ratio),
        baseline: 'password logins/s on the same server, alternating rounds',
        note: 'two requests per sign-in, no password hash; RS256 ID token; state in PostgreSQL',
      },
    ];
  } finally {
    await server.close();
    await database.drop();
  }
}
