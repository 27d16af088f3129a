import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  MAIL_LANGUAGES,
  MAIL_TEMPLATES,
  type MailDataByTemplate,
  type MailTemplate,
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
  email_change_confirm: {
    name: HOSTILE,
    newEmail: HOSTILE,
    link: 'http://gatehouse.test/account/email/confirm?token=a"b<c',
  },
  email_change_notice: {
    name: HOSTILE,
    newEmail: HOSTILE,
    link: 'http://gatehouse.test/account/email/revert?token=a"b<c',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
  },
  email_change_taken: {
    name: HOSTILE,
    loginLink: 'http://gatehouse.test/login?x="><script>',
    resetLink: 'http://gatehouse.test/forgot-password?x="><script>',
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
    for (const language of ['en', 'es', 'fr', 'de']) {
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
    assert.equal(mailLanguage('pt'), 'en');
    assert.equal(mailLanguage('fr-CA'), 'fr');
    assert.equal(mailLanguage('FR-ca'), 'fr');
    assert.equal(mailLanguage('de-AT'), 'de');
    assert.equal(mailLanguage('de_CH'), 'de');
    assert.equal(mailLanguage('zz'), 'en');
    assert.equal(mailLanguage(''), 'en');
    assert.equal(mailLanguage('not a tag'), 'en');
    assert.equal(renderMail('reset_password', 'pt-BR', { name: 'A', link: 'http://x' }).subject, 'Reset your password');
    assert.equal(
      renderMail('reset_password', 'fr-CA', { name: 'A', link: 'http://x' }).subject,
      'Réinitialisez votre mot de passe',
    );
    assert.equal(
      renderMail('reset_password', 'de-AT', { name: 'A', link: 'http://x' }).subject,
      'Setzen Sie Ihr Passwort zurück',
    );
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
    for (const language of ['en', 'es', 'fr', 'de']) {
      const { subject, text } = renderMail('invitation', language, data);
      assert.doesNotMatch(subject, /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069\u200E\u200F]/u, subject);
      const clipped = `URGENT: Bcc: victim@example.com password expired ${'x'.repeat(SUBJECT_NAME_MAX - 50)}…`;
      assert.equal(clipped.length, SUBJECT_NAME_MAX);
      assert.ok(subject.startsWith(clipped), subject);
      // Both names, each cut short (German puts the organization before the verb).
      assert.equal(subject.split(clipped).length, 3, subject);
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

/** Plain sample data: every value distinct, so that each one can be looked for in the mail. */
const sampleData: MailDataByTemplate = {
  account_created: {
    name: 'Ann',
    username: 'ann_smith',
    link: 'http://gatehouse.test/reset-password?token=a1&x=1',
    hours: 72,
  },
  email_change_confirm: {
    name: 'Ann',
    newEmail: 'ann.new@example.com',
    link: 'http://gatehouse.test/account/email/confirm?token=c1&x=1',
  },
  email_change_notice: {
    name: 'Ann',
    newEmail: 'ann.new@example.com',
    link: 'http://gatehouse.test/account/email/revert?token=u1&x=1',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
  email_change_taken: {
    name: 'Ann',
    loginLink: 'http://gatehouse.test/login',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
  verify_email: { name: 'Ann', link: 'http://gatehouse.test/verify-email?token=v1&x=1' },
  reset_password: { name: 'Ann', link: 'http://gatehouse.test/reset-password?token=r1&x=1' },
  password_changed: { name: 'Ann', link: 'http://gatehouse.test/forgot-password' },
  registration_attempt: {
    name: 'Ann',
    loginLink: 'http://gatehouse.test/login',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
  registration_username_taken: { username: 'ann_smith', registerLink: 'http://gatehouse.test/register' },
  mfa_enabled: {
    name: 'Ann',
    link: 'http://gatehouse.test/account',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
  mfa_disabled: {
    name: 'Ann',
    link: 'http://gatehouse.test/account',
    resetLink: 'http://gatehouse.test/forgot-password',
    byAdmin: false,
  },
  mfa_backup_code_used: {
    name: 'Ann',
    remaining: 7,
    link: 'http://gatehouse.test/account',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
  invitation: {
    organizationName: 'Acme Corp',
    inviterName: 'Bob Stone',
    inviterEmail: 'bob@example.com',
    role: 'viewer',
    link: 'http://gatehouse.test/invitations/accept?token=i1',
    abuseContact: 'abuse@example.com',
  },
  email_sign_in: { name: 'Ann', link: 'http://gatehouse.test/email-sign-in?token=e1', code: '042917' },
  passkey_added: {
    name: 'Ann',
    passkeyName: 'Work laptop',
    link: 'http://gatehouse.test/account/passkeys',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
  identity_linked: {
    name: 'Ann',
    provider: 'Acme SSO',
    link: 'http://gatehouse.test/account',
    resetLink: 'http://gatehouse.test/forgot-password',
  },
};

/** The values a reader must find in the mail, besides the links: booleans and roles are shown in words instead. */
const shownValues = (template: MailTemplate): string[] =>
  Object.entries(sampleData[template])
    .filter(([key, value]) => (typeof value === 'string' || typeof value === 'number') && key !== 'role')
    .map(([, value]) => String(value));

const isLink = (value: string) => value.startsWith('http://');
const escapeForHtml = (value: string) =>
  value.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');

describe('every template in every language', () => {
  test('the built-in languages are English, Spanish, French and German', () => {
    assert.deepEqual([...MAIL_LANGUAGES].sort(), ['de', 'en', 'es', 'fr']);
  });

  for (const template of MAIL_TEMPLATES) {
    for (const language of ['en', 'es', 'fr', 'de']) {
      test(`${template} (${language}) shows every value and link of its data, with nothing left unfilled`, () => {
        const mail = renderMail(template, language, sampleData[template] as never);
        assert.ok(mail.subject.trim().length > 0);
        assert.doesNotMatch(mail.subject, /[\r\n]/);
        for (const part of [mail.subject, mail.text, mail.html]) {
          assert.doesNotMatch(part, /\{\{|\}\}|undefined|null|NaN|\[object Object\]/, part);
        }
        for (const value of shownValues(template)) {
          if (isLink(value)) {
            assert.ok(mail.text.includes(value), `${value} in the text part:\n${mail.text}`);
            assert.ok(mail.html.includes(`href="${escapeForHtml(value)}"`), `${value} as a link:\n${mail.html}`);
          } else {
            assert.ok(mail.text.includes(value), `${value} in the text part:\n${mail.text}`);
            assert.ok(mail.html.includes(escapeForHtml(value)), `${value} in the HTML part:\n${mail.html}`);
          }
        }
        assert.match(mail.html, new RegExp(`^<!doctype html>\\n<html lang="${language}">.*</html>\\n$`, 's'));
        assert.equal(mail.html.match(/<p\b/g)?.length, mail.html.match(/<\/p>/g)?.length, 'every paragraph is closed');
      });
    }
  }

  test('a language has its own copy: no two languages share a subject', () => {
    for (const template of MAIL_TEMPLATES) {
      const subjects = ['en', 'es', 'fr', 'de'].map(
        (l) => renderMail(template, l, sampleData[template] as never).subject,
      );
      assert.equal(new Set(subjects).size, 4, `${template}: ${subjects.join(' | ')}`);
    }
  });

  test('the invitation names the role in words in French and German', () => {
    const data = sampleData.invitation;
    assert.match(renderMail('invitation', 'fr', data).text, /en tant que lecteur\./);
    assert.match(renderMail('invitation', 'de', { ...data, role: 'admin' }).text, /als Administrator beizutreten\./);
    assert.equal(renderMail('invitation', 'fr-CA', data).subject, 'Bob Stone vous invite à rejoindre Acme Corp');
  });

  test('the backup-code notice counts in the singular and the plural', () => {
    const one = { ...sampleData.mfa_backup_code_used, remaining: 1 };
    assert.match(renderMail('mfa_backup_code_used', 'fr', one).text, /Il reste 1 code de secours inutilisé\./);
    assert.match(renderMail('mfa_backup_code_used', 'de', one).text, /Ein unbenutzter Backup-Code ist übrig\./);
    assert.match(
      renderMail('mfa_backup_code_used', 'de', sampleData.mfa_backup_code_used).text,
      /7 unbenutzte Backup-Codes sind übrig\./,
    );
  });
});
