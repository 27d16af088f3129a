import { Secret, TOTP } from 'otpauth';
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
/**
 * An account accepts a code once per 30-second step, three steps in reach
 * with the skew: each round signs every account in once, so the rounds are
 * counted in logins, not seconds.
 */
const ACCOUNTS = 200;
const CONCURRENCY = 4 * HASH_CONCURRENCY;
const SERVER_ENV = {
  LOCKOUT_THRESHOLD: '1000',
  RATE_LIMIT_REAUTHENTICATE: '100000000/1h',
  HASH_CONCURRENCY: String(HASH_CONCURRENCY),
};
const PERIOD_MS = 30_000;

interface Enrolled {
  username: string;
  password: string;
  totp: TOTP;
  /** The last time step whose code this account has used. */
  lastStep: number;
}

async function enrol(api: string): Promise<Enrolled> {
  const user = uniqueUser();
  expectStatus('register', await postJson(`${api}/register`, user), 201);
  const tokens = expectStatus('login', await postJson(`${api}/login`, user), 200);
  const auth = { authorization: `Bearer ${String(tokens.access_token)}` };
  const setup = expectStatus('setup', await postJson(`${api}/mfa/totp/setup`, {}, auth), 200);
  const totp = new TOTP({ secret: Secret.fromBase32(String(setup.secret)), algorithm: 'SHA1', digits: 6, period: 30 });
  const step = Math.floor(Date.now() / PERIOD_MS);
  expectStatus('confirm', await postJson(`${api}/mfa/totp/confirm`, { code: totp.generate() }, auth), 200);
  return { username: user.username, password: user.password, totp, lastStep: step };
}

/**
 * A login with the second factor (the password, `403 MFA_REQUIRED`, then
 * `POST /login/mfa` with a TOTP code) against a password-only login on the
 * same server, alternating round by round, median of the per-round ratios.
 * Both verify one argon2id hash; the second factor adds a request, a
 * challenge row, an AES-GCM decryption, an HMAC-SHA1 and a compare-and-set.
 */
export default async function mfa(): Promise<BenchResult[]> {
  const database = await createDatabase();
  const server = await startServer('gatehouse', gatehouseEnv(database.url, SERVER_ENV));
  const api = `${server.url}/api/v1`;
  try {
    const plain = uniqueUser();
    expectStatus('register', await postJson(`${api}/register`, plain), 201);
    const accounts: Enrolled[] = [];
    while (accounts.length < ACCOUNTS) {
      accounts.push(...(await Promise.all(Array.from({ length: CONCURRENCY }, () => enrol(api)))));
    }
    // The code that confirmed each setup is spent: start once every account has a step in reach before now.
    const lastEnrolled = Math.max(...accounts.map((a) => a.lastStep));
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, (lastEnrolled + 2) * PERIOD_MS - Date.now())));

    let turn = 0;
    /** The next account with an unused step in reach (now − 1 … now + 1), and that step. */
    const nextCode = (): { account: Enrolled; code: string } => {
      for (let tried = 0; tried < accounts.length; tried++) {
        const account = accounts[turn++ % accounts.length] as Enrolled;
        const now = Math.floor(Date.now() / PERIOD_MS);
        const step = Math.max(now - 1, account.lastStep + 1);
        if (step > now + 1) continue;
        account.lastStep = step;
        return { account, code: account.totp.generate({ timestamp: step * PERIOD_MS + 1_000 }) };
      }
      throw new Error('every account has used the codes in reach of the clock');
    };

    const passwordLogin = async () => expectStatus('password login', await postJson(`${api}/login`, plain), 200);
    const mfaLogin = async () => {
      const { account, code } = nextCode();
      const challenge = expectStatus(
        'login',
        await postJson(`${api}/login`, { username: account.username, password: account.password }),
        403,
      );
      expectStatus('login/mfa', await postJson(`${api}/login/mfa`, { mfa_token: challenge.mfa_token, code }), 200);
    };

    const mid = await alternatingRounds({
      rounds: ROUNDS,
      count: accounts.length,
      concurrency: CONCURRENCY,
      baseline: passwordLogin,
      candidate: mfaLogin,
    });
    return [
      {
        name: `password logins/s (HASH_CONCURRENCY=${HASH_CONCURRENCY})`,
        value: round(mid.baseline, 1),
        unit: 'logins/s',
      },
      {
        name: `logins/s with a second factor (password → 403 MFA_REQUIRED → POST /login/mfa with a TOTP code)`,
        value: round(mid.candidate, 1),
        unit: 'logins/s',
        ratio: round(mid.ratio),
        baseline: 'password-only logins/s on the same server, alternating rounds',
        note: 'two requests per login; both paths verify one argon2id hash',
      },
    ];
  } finally {
    await server.close();
    await database.drop();
  }
}
