import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkEmail,
  checkLanguageCode,
  checkOrganizationName,
  checkPersonName,
  checkUsername,
  slugify,
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
