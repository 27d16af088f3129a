import assert from 'node:assert/strict';
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { Secret, TOTP } from 'otpauth';
import { json } from '../helpers.ts';
import type { TestClock } from './clock.ts';

/**
 * An authenticator app, as the user's phone runs it: the `otpauth` package,
 * an implementation independent of the code under test. Codes are made at
 * the app's test clock, so a test chooses the time step.
 */
export class Authenticator {
  readonly totp: TOTP;
  readonly clock: TestClock;

  constructor(secret: string, clock: TestClock) {
    this.totp = new TOTP({ secret: Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
    this.clock = clock;
  }

  static fromUrl(url: string, clock: TestClock): Authenticator {
    const secret = new URL(url).searchParams.get('secret');
    assert.ok(secret, url);
    return new Authenticator(secret, clock);
  }

  /** The code shown `steps` periods from the clock's now (0: now). */
  code(steps = 0): string {
    return this.totp.generate({ timestamp: this.clock.now().getTime() + steps * 30_000 });
  }

  /** Moves to the next time step, so that the next code is a fresh one. */
  nextStep(): void {
    this.clock.advance(30_000);
  }
}

export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export function postJson(
  app: FastifyInstance,
  url: string,
  payload: unknown,
  headers: Record<string, string> = {},
  method: 'POST' | 'DELETE' = 'POST',
): Promise<LightMyRequestResponse> {
  return app.inject({
    method,
    url,
    headers: { 'content-type': 'application/json', ...headers },
    payload: JSON.stringify(payload),
  });
}

/** Sets up and confirms TOTP for a signed-in session: the authenticator and the backup codes. */
export async function enrol(
  app: FastifyInstance,
  accessToken: string,
  clock: TestClock,
): Promise<{ authenticator: Authenticator; backupCodes: string[]; secret: string }> {
  const setup = await postJson(app, '/api/v1/mfa/totp/setup', {}, bearer(accessToken));
  assert.equal(setup.statusCode, 200, setup.body);
  const body = json<{ secret: string; otpauth_url: string }>(setup);
  const authenticator = new Authenticator(body.secret, clock);
  const confirm = await postJson(app, '/api/v1/mfa/totp/confirm', { code: authenticator.code() }, bearer(accessToken));
  assert.equal(confirm.statusCode, 200, confirm.body);
  authenticator.nextStep();
  return { authenticator, backupCodes: json<{ backup_codes: string[] }>(confirm).backup_codes, secret: body.secret };
}

/** The claims of a JWT, unverified (the tests read what the server put in). */
export function claims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString()) as Record<string, unknown>;
}
