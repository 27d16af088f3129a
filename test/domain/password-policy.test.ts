import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type PasswordPolicy, passwordPolicyHint, passwordPolicyIssues } from '../../src/domain/password-policy.ts';

const strict: PasswordPolicy = { preset: 'strict', hasher: 'argon2id' };
const nist: PasswordPolicy = { preset: 'nist', hasher: 'argon2id' };

test('a password meeting every strict rule has no issues', () => {
  assert.deepEqual(passwordPolicyIssues('Correct-Horse-7-Battery', {}, strict), []);
});

test('every failing strict rule is reported, not only the first', () => {
  assert.deepEqual(passwordPolicyIssues('', {}, strict), [
    'Password must be at least 12 characters long',
    'Password must contain at least one uppercase letter',
    'Password must contain at least one lowercase letter',
    'Password must contain at least one digit',
    'Password must contain at least one special character',
  ]);
});

test('only the listed special characters count', () => {
  assert.ok(
    passwordPolicyIssues('Abcdefghijk1~', {}, strict).includes('Password must contain at least one special character'),
  );
  for (const c of '!@#$%^&*()_+-=[]{}|;:,.<>?') {
    assert.deepEqual(passwordPolicyIssues(`Abcdefghijk1${c}`, {}, strict), [], c);
  }
});

test('strict: common patterns are refused case-insensitively', () => {
  for (const p of ['PassWord', '123456', 'QWERTY', 'Admin', 'LetMeIn']) {
    assert.ok(
      passwordPolicyIssues(`Xy9!${p}zzzzzz`, {}, strict).includes('Password must not contain common patterns'),
      p,
    );
  }
});

test('the username and the email local part may not appear in the password', () => {
  const issues = passwordPolicyIssues(
    'Xy9!JohnDoe-JSMITH',
    { username: 'johndoe', email: 'jsmith@example.com' },
    strict,
  );
  assert.ok(issues.includes('Password must not contain your username'));
  assert.ok(issues.includes('Password must not contain your email address'));
});

test('more than 128 characters is refused', () => {
  assert.deepEqual(passwordPolicyIssues(`Aa1!${'x'.repeat(125)}`, {}, strict), [
    'Password must be at most 128 characters long',
  ]);
});

test('length counts characters, not UTF-16 units or bytes', () => {
  assert.deepEqual(passwordPolicyIssues('Ωmega-😀😀😀😀-Z9', {}, strict), []);
  assert.ok(passwordPolicyIssues('Aa1!😀😀😀😀', {}, strict).includes('Password must be at least 12 characters long'));
});

test('nist: 15 characters, no composition rules, context and pattern checks kept', () => {
  assert.deepEqual(passwordPolicyIssues('correct horse battery', {}, nist), []);
  assert.deepEqual(passwordPolicyIssues('short phrase', {}, nist), ['Password must be at least 15 characters long']);
  assert.ok(
    passwordPolicyIssues('my name is johndoe ok', { username: 'johndoe' }, nist).includes(
      'Password must not contain your username',
    ),
  );
});

test('bcrypt: passwords over 72 bytes are refused, never truncated', () => {
  const policy: PasswordPolicy = { preset: 'strict', hasher: 'bcrypt' };
  const long = `Aa1!${'é'.repeat(40)}`; // 84 bytes, 44 characters
  assert.deepEqual(passwordPolicyIssues(long, {}, policy), ['Password must be at most 72 bytes long']);
  assert.deepEqual(passwordPolicyIssues(long, {}, strict), []);
});

/** A phrase of the hint for each rule `passwordPolicyIssues` can report. */
const HINT_FOR_ISSUE: [RegExp, (issue: string) => RegExp][] = [
  [/at least (\d+) characters/, (issue) => new RegExp(`^At least ${/\d+/.exec(issue)?.[0]} characters `)],
  [/at most 128 characters/, () => /\(at most 128[ )]/],
  [/at most 72 bytes/, () => /at most 128 and 72 bytes\)/],
  [/uppercase letter/, () => /an uppercase/],
  [/lowercase letter/, () => /a lowercase letter/],
  [/one digit/, () => /a digit/],
  [/special character/, () => /a special character \(one of !@#\$%\^&\*\(\)_\+-=\[\]\{\}\|;:,\.<>\?\)/],
  [
    /common patterns/,
    () =>
      /No common patterns \("password", "123456", "qwerty", "admin", "letmein"\)( as the whole password)?, not a common word in disguise/,
  ],
  [/your username/, () => /not your username/],
  [/your email address/, () => /username or email address/],
];

test('the hint names every rule the policy can report, and no rule it does not have', () => {
  const context = { username: 'johndoe', email: 'jsmith@example.com' };
  // Between them these break every rule of the policy they are checked against.
  const breakers = ['', 'password johndoe jsmith', 'P@ssw0rd1!', `Aa1!${'x'.repeat(125)}`, `Aa1!${'é'.repeat(40)}`];
  for (const policy of [
    strict,
    nist,
    { preset: 'strict', hasher: 'bcrypt' },
    { preset: 'nist', hasher: 'bcrypt' },
  ] as const) {
    const hint = passwordPolicyHint(policy);
    const issues = new Set(breakers.flatMap((p) => passwordPolicyIssues(p, context, policy)));
    for (const issue of issues) {
      const entry = HINT_FOR_ISSUE.find(([pattern]) => pattern.test(issue));
      assert.ok(entry, `no hint phrase is known for "${issue}"`);
      assert.match(hint, entry[1](issue), `${policy.preset}/${policy.hasher}: "${issue}" is not in "${hint}"`);
    }
    for (const [pattern, phrase] of HINT_FOR_ISSUE) {
      if (![...issues].some((issue) => pattern.test(issue))) {
        assert.doesNotMatch(hint, phrase(''), `${policy.preset}/${policy.hasher} has no rule ${pattern}`);
      }
    }
  }
});

test('PASSWORD_MIN_LENGTH replaces the preset minimum in the rules, their messages and the hint', () => {
  const short: PasswordPolicy = { preset: 'nist', hasher: 'argon2id', minLength: 8 };
  assert.deepEqual(passwordPolicyIssues('securepassword123', {}, short), []);
  assert.deepEqual(passwordPolicyIssues('abc', {}, short), ['Password must be at least 8 characters long']);
  assert.match(passwordPolicyHint(short), /^At least 8 characters /);
  const long: PasswordPolicy = { preset: 'strict', hasher: 'argon2id', minLength: 20 };
  assert.deepEqual(passwordPolicyIssues('Correct-Horse-7-Bat', {}, long), [
    'Password must be at least 20 characters long',
  ]);
  assert.match(passwordPolicyHint(long), /^At least 20 characters /);
});

test('a common word in disguise (look-alikes, any case, digits and symbols around) is refused', () => {
  for (const p of [
    'P@ssw0rd1234!',
    'Qw3rty!!2024',
    'PA$$W0RD-2024!',
    '4dm1n!!123456',
    'L3tM31n#2025',
    'W3lc0m3!2024xx'.slice(0, 12),
    '!!M0nk3y99##',
    '2024Dr4g0n!!',
  ]) {
    for (const policy of [strict, nist]) {
      assert.ok(
        passwordPolicyIssues(p.padEnd(15, '!'), {}, policy).includes('Password must not contain common patterns'),
        `${policy.preset}: ${p}`,
      );
    }
  }
});

test('other words besides a disguised common word are accepted', () => {
  assert.deepEqual(passwordPolicyIssues('MySecureP@ssw0rd123!', {}, strict), []);
  assert.deepEqual(passwordPolicyIssues('Qw3rty-Harbour-Lamp-9', {}, strict), []);
  assert.deepEqual(passwordPolicyIssues('my secure p@ssw0rd 123', {}, nist), []);
});

test('nist refuses a common pattern only as the whole password; strict anywhere', () => {
  assert.deepEqual(passwordPolicyIssues('securepassword123', {}, { ...nist, minLength: 8 }), []);
  assert.ok(
    passwordPolicyIssues('password', {}, { ...nist, minLength: 8 }).includes(
      'Password must not contain common patterns',
    ),
  );
  assert.ok(
    passwordPolicyIssues('Secure-password-123', {}, strict).includes('Password must not contain common patterns'),
  );
});
