import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkEmail,
  checkLanguageCode,
  checkOrganizationName,
  checkPersonName,
  checkUsername,
  slugify,
  usernameFromEmail,
} from '../../src/domain/account-rules.ts';

test('emails are trimmed and lower-cased', () => {
  assert.deepEqual(checkEmail('  John.Doe+tag@Example.COM '), { ok: true, value: 'john.doe+tag@example.com' });
});

test('deliverable-looking emails pass, others fail', () => {
  for (const e of ['a@b.co', "o'brien@example.ie", 'x@sub.domain.example', 'a@xn--80ak6aa92e.com']) {
    assert.equal(checkEmail(e).ok, true, e);
  }
  for (const e of [
    '',
    'a',
    '@b.co',
    'a@',
    'a@b',
    'a b@c.co',
    'Name <a@b.co>',
    '"a"@b.co',
    '.a@b.co',
    'a.@b.co',
    'a@b.c',
    'a@b_c.com',
    'a@1.2.3.4',
    'a@@b.co',
  ]) {
    assert.equal(checkEmail(e).ok, false, e);
  }
});

test('usernames: 3–50 of letters, digits, - and _; lower-cased', () => {
  assert.deepEqual(checkUsername('John_Doe-1'), { ok: true, value: 'john_doe-1' });
  for (const u of ['ab', 'x'.repeat(51), 'john doe', 'jöhn', 'john.doe', 'a@b'])
    assert.equal(checkUsername(u).ok, false, u);
  assert.equal(checkUsername('x'.repeat(50)).ok, true);
});

test('names: trimmed, NFC, at most 100, no control or bidi-override characters', () => {
  assert.deepEqual(checkPersonName('  Zoe\u0308 ', 'first_name'), { ok: true, value: 'Zoë' });
  assert.deepEqual(checkPersonName('   ', 'first_name'), { ok: true, value: null });
  assert.equal(checkPersonName('x'.repeat(101), 'first_name').ok, false);
  assert.equal(checkPersonName('a\nb', 'first_name').ok, false);
  assert.equal(checkPersonName('evil\u202Egnp.exe', 'first_name').ok, false);
});

test('organization names: 1–100 after trimming', () => {
  assert.equal(checkOrganizationName('  ').ok, false);
  assert.equal(checkOrganizationName('x'.repeat(101)).ok, false);
  assert.deepEqual(checkOrganizationName(' Acme '), { ok: true, value: 'Acme' });
});

test('language codes are BCP 47 tags, canonicalised', () => {
  assert.deepEqual(checkLanguageCode('pt-br'), { ok: true, value: 'pt-BR' });
  assert.deepEqual(checkLanguageCode('en'), { ok: true, value: 'en' });
  for (const l of ['', 'english!', 'x', '12', 'en_US']) assert.equal(checkLanguageCode(l).ok, false, l);
});

test('slugs are derived from names', () => {
  assert.equal(slugify('Acme Corporation'), 'acme-corporation');
  assert.equal(slugify('  Ça va? Très bien! '), 'ca-va-tres-bien');
  assert.equal(slugify('日本'), 'organization');
});

test('usernameFromEmail: the local part made a valid username, plus the suffix', () => {
  assert.equal(usernameFromEmail("Zoë.O'Brien+news@x.org", '1a2b3c4d'), 'zoe_o_brien_news_1a2b3c4d');
  assert.equal(usernameFromEmail('  JOHN@example.com ', 'ff00ff00'), 'john_ff00ff00');
  assert.equal(usernameFromEmail('ab@example.com', '00000000'), 'user_00000000');
  assert.equal(usernameFromEmail('日本@example.com', '00000000'), 'user_00000000');
  assert.equal(usernameFromEmail('', '00000000'), 'user_00000000');
  const long = usernameFromEmail(`${'a.'.repeat(60)}@example.com`, '12345678');
  assert.ok(long.length <= 50, long);
  for (const email of ["Zoë.O'Brien+news@x.org", '--__--@x.org', `${'é'.repeat(64)}@x.org`, 'a-b_c@x', '"q u"@x.org']) {
    const username = usernameFromEmail(email, 'abcdef12');
    const check = checkUsername(username);
    assert.ok(check.ok && check.value === username, `${email} → ${username}`);
  }
});
