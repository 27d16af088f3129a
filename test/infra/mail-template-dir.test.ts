import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, type TestContext, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { ConfigError } from '../../src/config.ts';
import { MAIL_VARIABLES } from '../../src/domain/mail-overrides.ts';
import { MAIL_TEMPLATES, renderMail, useMailOverrides } from '../../src/infra/mail-templates.ts';
import { json, logCapture, newUser, startApp, testConfig } from '../helpers.ts';
import { startAppWithMail, type TestMailServer, tokenFrom } from '../mail-server.ts';

const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** A fresh MAIL_TEMPLATE_DIR holding these files. */
function templateDir(files: Record<string, string | Buffer>): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-mail-'));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return dir;
}

/** Installs the overrides the configuration read from `dir`, as start-up does. */
function useDir(t: TestContext, dir: string): void {
  t.after(useMailOverrides(testConfig({ MAIL_TEMPLATE_DIR: dir }).mailTemplates));
}

/** The ConfigError loading MAIL_TEMPLATE_DIR=dir throws. */
function startupError(dir: string): ConfigError {
  try {
    testConfig({ MAIL_TEMPLATE_DIR: dir });
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.equal(error.variable, 'MAIL_TEMPLATE_DIR');
    return error;
  }
  assert.fail(`MAIL_TEMPLATE_DIR=${dir} was accepted`);
}

const verify = { name: 'Ann', link: 'http://gatehouse.test/verify-email?token=abc&x=1' };

describe('MAIL_TEMPLATE_DIR overrides', () => {
  test('an override replaces the subject, text and HTML of one template in one language, placeholders filled', (t) => {
    useDir(
      t,
      templateDir({
        'verify_email.fr.subject.txt': 'Bienvenue chez Acme, {{name}}\n',
        'verify_email.fr.txt': 'Salut {{ name }} !\nConfirmez ici : {{link}}\n',
        'verify_email.fr.html': '<p>Salut {{name}}</p><p><a href="{{link}}">Confirmer</a></p>',
      }),
    );
    const mail = renderMail('verify_email', 'fr', verify);
    assert.equal(mail.subject, 'Bienvenue chez Acme, Ann');
    assert.equal(mail.text, `Salut Ann !\nConfirmez ici : ${verify.link}\n`);
    assert.equal(
      mail.html,
      '<p>Salut Ann</p><p><a href="http://gatehouse.test/verify-email?token=abc&amp;x=1">Confirmer</a></p>',
    );
  });

  test('other languages and other templates keep their built-in copy', (t) => {
    useDir(t, templateDir({ 'verify_email.fr.subject.txt': 'Bienvenue chez Acme' }));
    assert.equal(renderMail('verify_email', 'es', verify).subject, 'Verifica tu dirección de correo');
    assert.equal(renderMail('verify_email', 'en', verify).subject, 'Verify your email address');
    assert.equal(renderMail('reset_password', 'fr', verify).subject, 'Réinitialisez votre mot de passe');
  });

  test('a missing part falls back to the built-in part alone', (t) => {
    useDir(t, templateDir({ 'verify_email.fr.subject.txt': 'Bienvenue chez Acme' }));
    const mail = renderMail('verify_email', 'fr', verify);
    assert.equal(mail.subject, 'Bienvenue chez Acme');
    assert.match(mail.text, /^Bonjour Ann,\n/);
    assert.ok(mail.text.includes(verify.link));
    assert.ok(mail.html.includes('href="http://gatehouse.test/verify-email?token=abc&amp;x=1"'));
    // The built-in HTML carries the subject the override gave.
    assert.ok(mail.html.includes('<title>Bienvenue chez Acme</title>'), mail.html);
  });

  test('a region file wins over its language, which wins over the file without a language', (t) => {
    useDir(
      t,
      templateDir({
        'verify_email.fr-CA.subject.txt': 'Québec',
        'verify_email.FR.subject.txt': 'France',
        'verify_email.subject.txt': 'Any language',
        'verify_email.pt.subject.txt': 'Português',
      }),
    );
    assert.equal(renderMail('verify_email', 'fr-CA', verify).subject, 'Québec');
    assert.equal(renderMail('verify_email', 'FR-ca', verify).subject, 'Québec');
    assert.equal(renderMail('verify_email', 'fr', verify).subject, 'France');
    assert.equal(renderMail('verify_email', 'fr-BE', verify).subject, 'France');
    // A language without a built-in copy can be added by its files alone.
    assert.equal(renderMail('verify_email', 'pt-BR', verify).subject, 'Português');
    assert.equal(renderMail('verify_email', 'de', verify).subject, 'Any language');
    assert.equal(renderMail('verify_email', 'en', verify).subject, 'Any language');
    // The text part is not overridden: it is the built-in copy of the language, English for Portuguese.
    assert.match(renderMail('verify_email', 'pt-BR', verify).text, /^Hello Ann,/);
  });

  test('values are escaped in the HTML part, as they are in the text part, one line in the subject', (t) => {
    useDir(
      t,
      templateDir({
        'invitation.subject.txt': '{{inviterName}}\ninvites you\r\nBcc: x@example.com',
        'invitation.txt':
          '{{inviterName}} ({{inviterEmail}}) invites you to {{organizationName}} as {{role}}: {{link}}',
        'invitation.html': '<p title="{{organizationName}}">{{inviterName}} as {{role}}</p>',
      }),
    );
    const hostile = '<script>alert("x")</script>&\'';
    const data = {
      organizationName: hostile,
      inviterName: `Eve\r\nBcc: victim@example.com ${hostile}`,
      inviterEmail: 'eve@example.com',
      role: 'viewer',
      link: 'http://gatehouse.test/invitations/accept?token=t',
      abuseContact: 'abuse@example.com',
    };
    const mail = renderMail('invitation', 'de', data);
    assert.equal(mail.subject, `Eve Bcc: victim@example.com ${hostile} invites you Bcc: x@example.com`);
    assert.doesNotMatch(mail.subject, /[\r\n]/);
    assert.equal(
      mail.text,
      `Eve Bcc: victim@example.com ${hostile} (eve@example.com) invites you to ${hostile} as Leser: ${data.link}`,
    );
    assert.ok(!mail.html.includes('<script>'), mail.html);
    assert.equal(
      mail.html,
      '<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">Eve Bcc: victim@example.com ' +
        '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39; as Leser</p>',
    );
  });

  /** What template engines would run: Eta's tags and a JavaScript template literal. */
  const CODE = `<%= it.name %> \${process.exit(1)} <% process.exit(1) %>`;

  test('a template is text: nothing in it is run', (t) => {
    useDir(
      t,
      templateDir({
        'verify_email.txt': `${CODE} {{name}}`,
      }),
    );
    assert.equal(renderMail('verify_email', 'en', verify).text, `${CODE} Ann`);
  });

  test('a null value fills its placeholder with nothing; a blank subject gives way to the built-in one', (t) => {
    useDir(
      t,
      templateDir({
        'email_sign_in.txt': 'Code: {{code}}. Link: {{link}}.',
        'email_sign_in.subject.txt': ' {{link}} ',
      }),
    );
    const mail = renderMail('email_sign_in', 'en', { name: 'Ann', link: null, code: '123456' });
    assert.equal(mail.text, 'Code: 123456. Link: .');
    // A subject left blank by its values is the built-in one: a mail never goes out without a subject.
    assert.equal(mail.subject, 'Your sign-in code');
  });

  test('without MAIL_TEMPLATE_DIR there are no overrides', () => {
    assert.equal(testConfig().mailTemplates.size, 0);
    assert.equal(renderMail('verify_email', 'en', verify).subject, 'Verify your email address');
  });
});

describe('MAIL_TEMPLATE_DIR is checked at start', () => {
  test('an unknown placeholder stops start-up, naming the file and the placeholder', () => {
    const dir = templateDir({ 'verify_email.fr.txt': 'Salut {{nmae}}, {{link}}' });
    const error = startupError(dir);
    assert.match(error.message, /verify_email\.fr\.txt/);
    assert.match(error.message, /\{\{nmae\}\}/);
    assert.ok(error.message.includes(dir), error.message);
    assert.match(error.message, /\{\{name\}\}, \{\{link\}\}/, 'the message lists the placeholders the template knows');
  });

  test("a placeholder of another template's data is unknown", () => {
    const error = startupError(templateDir({ 'verify_email.html': '<a href="{{resetLink}}">x</a>' }));
    assert.match(error.message, /"verify_email\.html" has an unknown placeholder \{\{resetLink\}\}/);
  });

  test('a malformed or unclosed placeholder stops start-up', () => {
    assert.match(
      startupError(templateDir({ 'verify_email.txt': 'Hi {{na me}}' })).message,
      /malformed placeholder "\{\{na me\}\}"/,
    );
    assert.match(startupError(templateDir({ 'verify_email.txt': 'Hi {{}}' })).message, /malformed placeholder/);
    assert.match(
      startupError(templateDir({ 'verify_email.txt': 'Hi {{name' })).message,
      /"verify_email\.txt" has an unclosed placeholder/,
    );
    assert.match(startupError(templateDir({ 'verify_email.txt': 'Hi name}}' })).message, /unclosed placeholder/);
  });

  test('a missing directory stops start-up, naming the path', () => {
    const missing = join(tmpdir(), `gatehouse-no-such-dir-${process.pid}`);
    const error = startupError(missing);
    assert.equal(error.message, `MAIL_TEMPLATE_DIR: ${missing}: no such directory`);
  });

  test('a file given for the directory stops start-up', () => {
    const dir = templateDir({ 'verify_email.txt': 'Hi {{name}}' });
    assert.match(startupError(join(dir, 'verify_email.txt')).message, /verify_email\.txt: is not a directory/);
  });

  test('a file that names no template, no part or a bad language stops start-up', () => {
    assert.match(
      startupError(templateDir({ 'verify_mail.txt': 'Hi' })).message,
      /the file "verify_mail\.txt" names no mail template "verify_mail"/,
    );
    assert.match(
      startupError(templateDir({ 'verify_email.md': 'Hi' })).message,
      /the file "verify_email\.md" is not a mail template part/,
    );
    assert.match(
      startupError(templateDir({ 'verify_email.fr.ca.txt': 'Hi' })).message,
      /the file "verify_email\.fr\.ca\.txt" must be verify_email\.<language>\.txt/,
    );
    assert.match(startupError(templateDir({ 'verify_email.f!.txt': 'Hi' })).message, /language tag such as fr/);
  });

  test('an empty file, a sub-directory or two files for one part stop start-up', () => {
    assert.match(startupError(templateDir({ 'verify_email.txt': ' \n' })).message, /"verify_email\.txt" is empty/);
    const nested = templateDir({});
    mkdirSync(join(nested, 'fr'));
    assert.match(startupError(nested).message, /"fr" is not a file/);
    assert.match(
      startupError(templateDir({ 'verify_email.fr-CA.txt': 'a', 'verify_email.fr-ca.txt': 'b' })).message,
      /are the same part of one template/,
    );
  });

  test('a file that is not UTF-8 stops start-up', () => {
    const error = startupError(templateDir({ 'verify_email.txt': Buffer.from([0xff, 0xfe, 0x41]) }));
    assert.match(error.message, /"verify_email\.txt" is not UTF-8 text/);
  });

  test('dot files (editor and VCS leftovers) are ignored', () => {
    const config = testConfig({
      MAIL_TEMPLATE_DIR: templateDir({ '.DS_Store': '\x00\xff', '.gitkeep': '', 'verify_email.txt': '{{name}}' }),
    });
    assert.deepEqual([...config.mailTemplates.keys()], ['verify_email']);
  });

  test('the app does not start with a bad template', async () => {
    await assert.rejects(
      startApp({ MAIL_TEMPLATE_DIR: templateDir({ 'reset_password.de.subject.txt': 'Hallo {{nam}}' }) }),
      (error: Error) =>
        error instanceof ConfigError && /reset_password\.de\.subject\.txt.*\{\{nam\}\}/.test(error.message),
    );
  });
});

describe('MAIL_TEMPLATE_DIR end to end', () => {
  let app: FastifyInstance;
  let smtp: TestMailServer;
  let close: () => Promise<void>;

  after(async () => {
    await close?.();
    // Closing the app uninstalls its overrides.
    assert.equal(renderMail('verify_email', 'en', verify).subject, 'Verify your email address');
  });

  test('registration mails the override, its link filled in, and the link verifies the address', async () => {
    const dir = templateDir({
      'verify_email.en.subject.txt': 'Welcome to Acme, {{name}}',
      'verify_email.en.txt': 'Hi {{name}},\n\nConfirm your address: {{link}}\n\n-- The Acme team\n',
      'verify_email.en.html':
        '<!doctype html><html><body><p>Hi {{name}},</p><p><a href="{{link}}">Confirm your address</a></p><p>The Acme team</p></body></html>',
    });
    const logs = logCapture();
    ({ app, smtp, close } = await startAppWithMail(
      { MAIL_TEMPLATE_DIR: dir },
      { logger: { level: 'info', stream: logs.stream } },
    ));
    const started = logs.lines.map((l) => JSON.parse(l)).find((l) => /^mail templates:/.test(l.msg));
    assert.equal(started?.msg, 'mail templates: 3 part(s) replaced from MAIL_TEMPLATE_DIR');
    assert.deepEqual(started?.mail_templates, [
      'verify_email.en.html',
      'verify_email.en.subject',
      'verify_email.en.text',
    ]);
    const user = newUser({ first_name: 'Zoë <b>', language_code: 'en-GB' });
    const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(res.statusCode, 201, res.body);
    const [mail] = await smtp.waitFor(String(user.email));
    assert.ok(mail);
    assert.equal(mail.subject, 'Welcome to Acme, Zoë <b>');
    const link = mail.links.find((l) => l.startsWith('http://gatehouse.test/verify-email?token='));
    assert.ok(link, mail.links.join(', '));
    assert.equal(mail.text.trim(), `Hi Zoë <b>,\n\nConfirm your address: ${link}\n\n-- The Acme team`);
    assert.ok(mail.html.includes('<p>Hi Zoë &lt;b&gt;,</p>'), mail.html);
    assert.ok(mail.html.includes(`<a href="${link}">Confirm your address</a>`), mail.html);
    const verified = await app.inject({
      method: 'POST',
      url: '/api/v1/verify-email',
      payload: { token: tokenFrom(link) },
    });
    assert.equal(verified.statusCode, 200, verified.body);
    assert.equal(json(verified).email_verified, true);
  });

  test('a user of another language gets the built-in copy of that language', async () => {
    const user = newUser({ first_name: 'Ana', language_code: 'es-MX' });
    const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
    assert.equal(res.statusCode, 201, res.body);
    const [mail] = await smtp.waitFor(String(user.email));
    assert.equal(mail?.subject, 'Verifica tu dirección de correo');
    assert.match(mail?.text ?? '', /^Hola Ana:/);
  });
});

test('docs/email.md lists every template with exactly its placeholders', () => {
  const doc = readFileSync(join(import.meta.dirname, '../../docs/email.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Custom templates'));
  const rows = new Map(
    [...section.matchAll(/^\| `(\w+)` \| (`\{\{.*)\|$/gm)].map((m) => [
      m[1],
      [...(m[2] as string).matchAll(/\{\{(\w+)\}\}/g)].map((v) => v[1]),
    ]),
  );
  assert.deepEqual([...rows.keys()].sort(), [...MAIL_TEMPLATES].sort());
  for (const template of MAIL_TEMPLATES) assert.deepEqual(rows.get(template), [...MAIL_VARIABLES[template]], template);
});
