import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { DatabaseHandle } from '../../src/db/index.ts';
import { json } from '../helpers.ts';
import { testClock } from '../support/clock.ts';
import { enrol, postJson } from '../support/mfa.ts';
import { assertProblem } from '../support/problem.ts';
import { createAccount, login, loginRequest, startAuthApp, type TestAccount, testDatabase } from './auth-helpers.ts';

/** Instances in turn on one database, as a rolling restart with a new MFA_ENCRYPTION_KEY runs them. */
describe('rotating MFA_ENCRYPTION_KEY', () => {
  const clock = testClock();
  const oldKey = randomBytes(32).toString('base64url');
  const newKey = randomBytes(32).toString('base64url');
  let database: DatabaseHandle;
  const apps: FastifyInstance[] = [];

  before(async () => {
    database = await testDatabase();
  });
  after(async () => {
    for (const app of apps) await app.close();
    await database.close();
  });

  async function instance(env: Record<string, string>): Promise<FastifyInstance> {
    const app = await startAuthApp(env, { database, clock });
    apps.push(app);
    return app;
  }

  async function mfaToken(app: FastifyInstance, account: TestAccount): Promise<string> {
    return String(
      assertProblem(await loginRequest(app, account.username, account.password), 403, 'MFA_REQUIRED').mfa_token,
    );
  }

  const keyIds = async (userId: number) => ({
    totp: (
      await database.db.selectFrom('mfa_totp').select('key_id').where('user_id', '=', userId).executeTakeFirstOrThrow()
    ).key_id,
    codes: [
      ...new Set(
        (await database.db.selectFrom('mfa_backup_codes').select('key_id').where('user_id', '=', userId).execute()).map(
          (r) => r.key_id,
        ),
      ),
    ],
  });

  test('with the old key in MFA_ENCRYPTION_KEY_PREVIOUS, codes keep working and secrets move to the new key', async () => {
    const before = await instance({ MFA_ENCRYPTION_KEY: oldKey });
    const account = await createAccount(before);
    const tokens = await login(before, account);
    const { authenticator, backupCodes } = await enrol(before, tokens.access_token, clock);
    const enrolled = await keyIds(account.id);

    const after = await instance({ MFA_ENCRYPTION_KEY: newKey, MFA_ENCRYPTION_KEY_PREVIOUS: oldKey });
    const res = await postJson(after, '/api/v1/login/mfa', {
      mfa_token: await mfaToken(after, account),
      code: authenticator.code(),
    });
    assert.equal(res.statusCode, 200, res.body);
    const moved = await keyIds(account.id);
    assert.notEqual(moved.totp, enrolled.totp, 'the secret is rewritten under the new key');
    // Backup codes made under the old key still work.
    const backup = await postJson(after, '/api/v1/login/mfa', {
      mfa_token: await mfaToken(after, account),
      backup_code: backupCodes[0],
    });
    assert.equal(backup.statusCode, 200, backup.body);

    // Without the old key, the new instance still reads the moved secret.
    authenticator.nextStep();
    const only = await instance({ MFA_ENCRYPTION_KEY: newKey });
    const again = await postJson(only, '/api/v1/login/mfa', {
      mfa_token: await mfaToken(only, account),
      code: authenticator.code(),
    });
    assert.equal(again.statusCode, 200, again.body);
    assert.equal(typeof json(again).access_token, 'string');
  });

  test('a key shorter than 32 bytes stops start-up', async () => {
    await assert.rejects(instance({ MFA_ENCRYPTION_KEY: 'short' }), /MFA_ENCRYPTION_KEY/);
  });
});
