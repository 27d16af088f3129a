import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MAIL_TEMPLATES,
  type MailDataByTemplate,
  mailLanguage,
  renderMail,
  SUBJECT_NAME_MAX,
} from '../../src/infra/mail-templates.ts';

const HOSTILE = '<script>alert("x")</script>&\'';

/** Every field of every template carries markup and quotes. */
const hostileData: MailDataByTemplate = {
  verify_email: { name: HOSTILE, link: 'http://gatehouse.test/verify-email?token=a"b<c' },
  reset_password: { name: HOSTILE, link: 'http://gatehouse.test/reset-password?token=a"b<c' },
  password_changed: { name: HOSTILE, link: 'http://gatehouse.test/forgot-password?x="><script>' },
  registration_attempt: {
    name: HOSTILE,
    loginLink: 'http://gatehouse.test/login?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
  },
  registration_username_taken: { username: HOSTILE, registerLink: 'http://gatehouse.test/register?x="><script>' },
  mfa_enabled: {
    name: HOSTILE,
    link: 'http://gatehouse.test/account?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
  },
  mfa_disabled: {
    name: HOSTILE,
    link: 'http://gatehouse.test/account?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
    byAdmin: true,
  },
  identity_linked: {
    name: HOSTILE,
    provider: HOSTILE,
    link: 'http://gatehouse.test/account?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
  },
  passkey_added: {
    name: HOSTILE,
    passkeyName: HOSTILE,
    link: 'http://gatehouse.test/account?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
  },
  mfa_backup_code_used: {
    name: HOSTILE,
    remaining: 9,
    link: 'http://gatehouse.test/account?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
  },
  invitation: {
    organizationName: HOSTILE,
    inviterName: HOSTILE,
    inviterEmail: HOSTILE,
    role: HOSTILE,
    link: 'http://gatehouse.test/invitations/accept?token=a"b<c',
    abuseContact: HOSTILE,
  },
  email_sign_in: { name: HOSTILE, link: 'http://gatehouse.test/email-sign-in?token=a"b<c', code: '012345' },
  account_created: {
    name: HOSTILE,
    username: HOSTILE,
    link: 'http://gatehouse.test/reset-password?token=a"b<c',
    hours: 72,
  },
};

const render = (template: keyof MailDataByTemplate, language: string) =>
  renderMail(template, language, hostileData[template] as never);

describe('mail templates', () => {
  for (const template of MAIL_TEMPLATES) {
    for (const language of ['en', 'es']) {
      test(`${template} (${language}) has a subject, a text part and an HTML part, every value escaped in the HTML`, () => {
        const mail = render(template, language);
        assert.ok(mail.subject.length > 0);
        assert.ok(mail.text.length > 0);
        assert.match(mail.html, new RegExp(`^<!doctype html>\\n<html lang="${language}">`));
        assert.ok(!mail.html.includes('<script>'), mail.html);
        assert.ok(!mail.html.includes('"b<c'), 'links are escaped in attributes');
        assert.ok(mail.html.includes('&lt;script&gt;'));
        // Plain text is not HTML: it carries the values as they are.
        assert.ok(mail.text.includes('http://gatehouse.test/'));
      });
    }
  }

  test('the text part carries each link in full', () => {
    const mail = renderMail('registration_attempt', 'en', {
      name: 'Ann',
      loginLink: 'http://gatehouse.test/login',
      resetLink: 'http://gatehouse.test/forgot-password',
    });
    assert.match(mail.text, /Log in: http:\/\/gatehouse\.test\/login\n/);
    assert.match(mail.text, /Reset your password: http:\/\/gatehouse\.test\/forgot-password\n/);
  });

  test('the language is chosen by the primary subtag, falling back to English', () => {
    assert.equal(mailLanguage('es'), 'es');
    assert.equal(mailLanguage('es-MX'), 'es');
    assert.equal(mailLanguage('ES'), 'es');
    assert.equal(mailLanguage('pt-BR'), 'en');
    assert.equal(mailLanguage(''), 'en');
    assert.equal(renderMail('reset_password', 'fr', { name: 'A', link: 'http://x' }).subject, 'Reset your password');
    assert.equal(
      renderMail('reset_password', 'es-AR', { name: 'A', link: 'http://x' }).subject,
      'Restablece tu contraseña',
    );
  });

  test('account_created names the username, the link and how long it works, in English and Spanish', () => {
    const data = { name: 'Ann', username: 'ann_k', link: 'http://gatehouse.test/reset-password?token=t', hours: 72 };
    const en = renderMail('account_created', 'en', data);
    assert.equal(en.subject, 'An account was created for you');
    assert.match(en.text, /with the username ann_k\./);
    assert.match(en.text, /valid for 72 hours/);
    assert.match(en.text, /Choose a password: http:\/\/gatehouse\.test\/reset-password\?token=t\n/);
    const es = renderMail('account_created', 'es-MX', data);
    assert.equal(es.subject, 'Se ha creado una cuenta para ti');
    assert.match(es.text, /nombre de usuario ann_k\./);
    assert.match(es.text, /válido durante 72 horas/);
  });

  test('the invitation names the organization, the inviter and the role in words', () => {
    const data = {
      organizationName: 'Acme',
      inviterName: 'Ann',
      inviterEmail: 'ann@example.com',
      role: 'viewer',
      link: 'http://gatehouse.test/i',
      abuseContact: 'abuse@example.com',
    };
    const en = renderMail('invitation', 'en', data);
    assert.equal(en.subject, 'Ann invited you to join Acme');
    assert.match(en.text, /Ann \(ann@example\.com\) invited you to join Acme as a viewer\./);
    assert.match(en.text, /To report abuse, forward this message to abuse@example\.com\./);
    const es = renderMail('invitation', 'es', data);
    assert.equal(es.subject, 'Ann te invitó a unirte a Acme');
    assert.match(es.text, /Ann \(ann@example\.com\) te invitó a unirte a Acme como lector\./);
    assert.match(es.text, /reenvía este mensaje a abuse@example\.com\./);
  });

  test('names in an invitation subject are one line of at most SUBJECT_NAME_MAX characters, whatever they hold', () => {
    const hostile = `\u202EURGENT:\r\nBcc: victim@example.com\t\u0007password\u2028expired\u200F ${'x'.repeat(200)}`;
    const data = {
      organizationName: hostile,
      inviterName: hostile,
      inviterEmail: 'ann@example.com',
      role: 'user',
      link: 'http://gatehouse.test/i',
      abuseContact: 'abuse@example.com',
    };
    for (const language of ['en', 'es']) {
      const { subject, text } = renderMail('invitation', language, data);
      assert.doesNotMatch(subject, /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069\u200E\u200F]/u, subject);
      const clipped = `URGENT: Bcc: victim@example.com password expired ${'x'.repeat(SUBJECT_NAME_MAX - 50)}…`;
      assert.equal(clipped.length, SUBJECT_NAME_MAX);
      assert.ok(subject.startsWith(clipped), subject);
      assert.ok(subject.endsWith(` ${clipped}`), subject);
      // The body line is one line too: every line of the text part holds no control character.
      for (const line of text.split('\n')) assert.doesNotMatch(line, /[\p{Cc}\u2028\u202E]/u);
    }
  });

  test('the username-taken notice names the username and links to the form', () => {
    const mail = renderMail('registration_username_taken', 'en', {
      username: 'ann',
      registerLink: 'http://gatehouse.test/register',
    });
    assert.equal(mail.subject, 'Choose another username to finish registering');
    assert.match(mail.text, /the username "ann"/);
    assert.match(mail.text, /Register with another username: http:\/\/gatehouse\.test\/register\n/);
  });
});
