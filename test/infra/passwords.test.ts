import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as argon2 from '@node-rs/argon2';
import * as bcrypt from '@node-rs/bcrypt';
import { HashPool } from '../../src/infra/hash-pool.ts';
import { dummyHash, PasswordHasher } from '../../src/infra/passwords.ts';

describe('the dummy hash an unknown user is verified against', () => {
  const pool = () => new HashPool(1, 10);

  test('argon2id: current parameters, a random salt and digest, verified in full by the real library', async () => {
    const hasher = new PasswordHasher({ algorithm: 'argon2id', bcryptRounds: 10, pool: pool() });
    const dummy = dummyHash({ algorithm: 'argon2id', bcryptRounds: 10 });
    assert.match(dummy, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    assert.equal(hasher.needsRehash(dummy), false, 'the same cost as a stored hash of today');
    // Resolves false (a full verification), rather than rejecting a malformed hash early.
    assert.equal(await argon2.verify(dummy, 'any password'), false);
    assert.notEqual(dummy, dummyHash({ algorithm: 'argon2id', bcryptRounds: 10 }), 'random per process');
  });

  for (const rounds of [4, 10, 12]) {
    test(`bcrypt with ${rounds} rounds: the configured cost, canonical salt and digest, verified in full`, async () => {
      const hasher = new PasswordHasher({ algorithm: 'bcrypt', bcryptRounds: rounds, pool: pool() });
      for (let i = 0; i < 50; i++) {
        const dummy = dummyHash({ algorithm: 'bcrypt', bcryptRounds: rounds });
        assert.match(dummy, new RegExp(`^\\$2b\\$${String(rounds).padStart(2, '0')}\\$[./A-Za-z0-9]{53}$`));
        assert.equal(hasher.needsRehash(dummy), false);
        if (rounds === 4) assert.equal(await bcrypt.verify('any password', dummy), false);
      }
    });
  }

  test('verifyDummy runs one verification through the pool and matches nothing', async () => {
    const hashPool = pool();
    const hasher = new PasswordHasher({ algorithm: 'bcrypt', bcryptRounds: 4, pool: hashPool });
    await hasher.verifyDummy('gatehouse-dummy-password-for-timing');
    await hasher.verifyDummy('');
    assert.equal(hashPool.completed, 2);
  });
});
