import { SoftAuthenticator } from '../../test/support/webauthn-authenticator.ts';
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
const ACCOUNTS = 100;
const LOGINS_PER_ROUND = 200;
const CONCURRENCY = 4 * HASH_CONCURRENCY;
/** The software authenticator signs for this origin; the server is told to expect it. */
const ORIGIN = 'http://bench.test';
const SERVER_ENV = {
  HASH_CONCURRENCY: String(HASH_CONCURRENCY),
  RATE_LIMIT_REAUTHENTICATE: '100000000/1h',
  WEBAUTHN_RP_ID: 'bench.test',
  WEBAUTHN_ORIGINS: ORIGIN,
};

/** An account with one passkey, held by its own software authenticator. */
async function withPasskey(api: string): Promise<SoftAuthenticator> {
  const user = uniqueUser();
  expectStatus('register', await postJson(`${api}/register`, user), 201);
  const tokens = expectStatus('login', await postJson(`${api}/login`, user), 200);
  const auth = { authorization: `Bearer ${String(tokens.access_token)}` };
  const options = expectStatus('register/options', await postJson(`${api}/passkeys/register/options`, {}, auth), 200);
  const authenticator = new SoftAuthenticator(ORIGIN);
  const response = authenticator.register(options as Parameters<SoftAuthenticator['register']>[0]);
  expectStatus('register/verify', await postJson(`${api}/passkeys/register/verify`, { response }, auth), 201);
  return authenticator;
}

/**
 * A passkey login (options, the authenticator's ES256 signature, verify)
 * against a password login on the same server, alternating round by round,
 * median of the per-round ratios. A passkey login hashes no password: two
 * requests, a challenge row written and spent, one P-256 verification.
 */
export default async function passkeys(): Promise<BenchResult[]> {
  const database = await createDatabase();
  const server = await startServer('gatehouse', gatehouseEnv(database.url, SERVER_ENV));
  const api = `${server.url}/api/v1`;
  try {
    const plain = uniqueUser();
    expectStatus('register', await postJson(`${api}/register`, plain), 201);
    const authenticators: SoftAuthenticator[] = [];
    while (authenticators.length < ACCOUNTS) {
      authenticators.push(...(await Promise.all(Array.from({ length: CONCURRENCY }, () => withPasskey(api)))));
    }

    let turn = 0;
    const passwordLogin = async () => expectStatus('password login', await postJson(`${api}/login`, plain), 200);
    const passkeyLogin = async () => {
      const authenticator = authenticators[turn++ % authenticators.length] as SoftAuthenticator;
      const options = expectStatus('login/passkey/options', await postJson(`${api}/login/passkey/options`, {}), 200);
      // Counter 0, as synced passkeys report: concurrent logins of one account do not race on it.
      const response = authenticator.authenticate(options as { challenge: string }, { counter: 0 });
      expectStatus(
        'login/passkey/verify',
        await postJson(`${api}/login/passkey/verify`, { challenge_id: options.challenge_id, response }),
        200,
      );
    };

    const mid = await alternatingRounds({
      rounds: ROUNDS,
      count: LOGINS_PER_ROUND,
      concurrency: CONCURRENCY,
      baseline: passwordLogin,
      candidate: passkeyLogin,
    });
    return [
      {
        name: `password logins/s (HASH_CONCURRENCY=${HASH_CONCURRENCY})`,
        value: round(mid.baseline, 1),
        unit: 'logins/s',
      },
      {
        name: 'passkey logins/s (POST /login/passkey/options → signature → POST /login/passkey/verify)',
        value: round(mid.candidate, 1),
        unit: 'logins/s',
        ratio: round(mid.ratio),
        baseline: 'password logins/s on the same server, alternating rounds',
        note: 'two requests per login, no password hash; the client signs with node:crypto',
      },
    ];
  } finally {
    await server.close();
    await database.drop();
  }
}
