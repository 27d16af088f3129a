import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { simpleParser } from 'mailparser';
import { pino } from 'pino';
import { queueMail } from '../../src/infra/mail.ts';
import { createMailTransport, OutboxSender, SmtpTransport } from '../../src/infra/outbox.ts';
import { json, logCapture, newUser, startApp, uniqueName } from '../helpers.ts';
import { TestMailServer, tokenFrom } from '../mail-server.ts';

/** Fast polling and retries, so that an outage and its recovery fit in a test. */
const FAST_OUTBOX = { OUTBOX_POLL_MS: '50', OUTBOX_RETRY_BASE_MS: '50' };

function register(app: FastifyInstance, user: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
}

async function outboxRows(app: FastifyInstance, to: string) {
  return app.gatehouse.db.selectFrom('email_outbox').selectAll().where('to_address', '=', to).orderBy('id').execute();
}

describe('mail outbox over real SMTP', () => {
  let smtp: TestMailServer;
  let app: FastifyInstance;
  const logs = logCapture();

  before(async () => {
    smtp = await TestMailServer.start();
    app = await startApp(
      {
        ...FAST_OUTBOX,
        RATE_LIMIT_FORGOT_PASSWORD: '100000/1h',
        SMTP_URL: smtp.url,
        MAIL_FROM: 'Gatehouse <auth@gatehouse.test>',
        REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      },
      { logger: { level: 'debug', stream: logs.stream } },
    );
  });
  after(async () => {
    await app.close();
    await smtp.stop();
  });

  test('a registration mail is delivered over SMTP with text and HTML parts and recorded as sent', async () => {
    const user = newUser({ first_name: 'Ada' });
    assert.equal((await register(app, user)).statusCode, 201);
    const [mail] = await smtp.waitFor(String(user.email));
    assert.ok(mail);
    assert.equal(mail.subject, 'Verify your email address');
    assert.match(mail.from, /^"?Gatehouse"? <auth@gatehouse\.test>$/);
    assert.match(mail.text, /^Hello Ada,/);
    assert.match(mail.html, /<p>Hello Ada,<\/p>/);
    assert.match(mail.messageId ?? '', /^<outbox-\d+-\d+@gatehouse\.test>$/);
    assert.equal(mail.headers.get('auto-submitted'), 'auto-generated');
    const link = mail.links.find((l) => l.includes('/verify-email?'));
    assert.ok(link?.startsWith('http://gatehouse.test/verify-email?token='), String(link));

    await app.gatehouse.outbox.drain();
    const [row] = await outboxRows(app, String(user.email));
    assert.equal(row?.status, 'sent');
    assert.equal(row?.attempts, 1);
    assert.ok(row?.sent_at instanceof Date);
    assert.equal(row?.last_error, null);
  });

  test('with SMTP configured no log line carries a mailed token', async () => {
    const user = newUser();
    assert.equal((await register(app, user)).statusCode, 201);
    const [mail] = await smtp.waitFor(String(user.email));
    const token = tokenFrom(mail?.links[0] as string);
    await app.gatehouse.outbox.drain();
    assert.ok(
      logs.lines.some((l) => l.includes('"mail sent"')),
      'expected a delivery log line',
    );
    for (const line of logs.lines) assert.ok(!line.includes(token), `token leaked: ${line}`);
  });

  test('a mail queued in a transaction that rolls back never exists and is never sent', async () => {
    const to = `${uniqueName()}@example.com`;
    await assert.rejects(
      app.gatehouse.db.transaction().execute(async (trx) => {
        await queueMail(trx, {
          to,
          template: 'verify_email',
          languageCode: 'en',
          data: { name: 'x', link: 'http://x' },
        });
        throw new Error('the event failed');
      }),
      /the event failed/,
    );
    await app.gatehouse.outbox.drain();
    assert.deepEqual(await outboxRows(app, to), []);
    assert.deepEqual(smtp.to(to), []);
  });

  test('SMTP down: registrations and resets still succeed, and on recovery every queued mail is delivered exactly once', async () => {
    const existing = newUser();
    assert.equal((await register(app, existing)).statusCode, 201);
    await smtp.waitFor(String(existing.email));
    await smtp.stop();
    const users = Array.from({ length: 5 }, () => newUser());
    try {
      for (const user of users) assert.equal((await register(app, user)).statusCode, 201);
      const forgot = await app.inject({
        method: 'POST',
        url: '/api/v1/forgot-password',
        payload: { email: existing.email },
      });
      assert.equal(forgot.statusCode, 202, forgot.body);
      // At least one failed attempt each, recorded without losing the mail.
      for (const user of users) {
        await waitUntil(async () => ((await outboxRows(app, String(user.email)))[0]?.last_error ?? null) !== null);
        const [row] = await outboxRows(app, String(user.email));
        assert.equal(row?.status, 'pending');
        assert.match(String(row?.last_error), /ECONNECTION|ECONNREFUSED/);
      }
    } finally {
      await smtp.restart();
    }
    for (const user of users) await smtp.waitFor(String(user.email));
    // More polls after recovery deliver nothing twice.
    await app.gatehouse.outbox.drain();
    await app.gatehouse.outbox.deliverDue();
    for (const user of users) {
      assert.equal(smtp.to(String(user.email)).length, 1, String(user.email));
      const [row] = await outboxRows(app, String(user.email));
      assert.equal(row?.status, 'sent');
      assert.ok((row?.attempts ?? 0) >= 2, `attempts ${row?.attempts}`);
    }
    // The verification mail before the outage and the reset mail after it, once each; the reset link works.
    const mails = await smtp.waitFor(String(existing.email), 2);
    assert.equal(mails.length, 2);
    assert.equal(mails[1]?.subject, 'Reset your password');
    const password = `${String(existing.password)}2`;
    const reset = await app.inject({
      method: 'POST',
      url: '/api/v1/reset-password',
      payload: { token: tokenFrom(mails[1]?.links[0] as string), new_password: password, confirm_password: password },
    });
    assert.equal(reset.statusCode, 204, reset.body);
  });

  test('a recipient refused with a permanent 5xx is marked failed after one attempt', async () => {
    const refusing = await TestMailServer.start({ rejectRecipient: (a) => a.startsWith('bounce-') });
    const sender = new OutboxSender({
      db: app.gatehouse.db,
      transport: new SmtpTransport(refusing.url, { mailFrom: 'a@gatehouse.test', publicUrl: 'http://gatehouse.test' }),
      log: app.log,
      pollMs: 60_000,
      retryBaseMs: 60_000,
      maxAttempts: 5,
    });
    const to = `bounce-${uniqueName()}@example.com`;
    try {
      await queueMail(app.gatehouse.db, {
        to,
        template: 'verify_email',
        languageCode: 'en',
        data: { name: 'x', link: 'http://gatehouse.test/verify-email?token=abc' },
      });
      await sender.drain();
      const [row] = await outboxRows(app, to);
      assert.equal(row?.status, 'failed');
      assert.equal(row?.attempts, 1);
      assert.match(String(row?.last_error), /550/);
      assert.deepEqual(refusing.to(to), []);
    } finally {
      await sender.stop();
      await refusing.stop();
    }
  });
});

describe('outbox retries', () => {
  let app: FastifyInstance;

  before(async () => {
    // The app's own sender never polls in these tests; each test drives a sender of its own.
    app = await startApp({ OUTBOX_POLL_MS: '3600000', REDIS_KEY_PREFIX: `t:${uniqueName()}:` });
  });
  after(() => app.close());

  async function queue(to: string): Promise<number> {
    return queueMail(app.gatehouse.db, {
      to,
      template: 'verify_email',
      languageCode: 'en',
      data: { name: 'x', link: 'http://gatehouse.test/verify-email?token=abc' },
    });
  }

  async function row(id: number) {
    return app.gatehouse.db.selectFrom('email_outbox').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
  }

  async function makeDue(id: number): Promise<void> {
    await app.gatehouse.db
      .updateTable('email_outbox')
      .set({ next_attempt_at: new Date(0) })
      .where('id', '=', id)
      .execute();
  }

  test('each failure doubles the wait before the next attempt, and the last allowed failure marks the mail failed', async () => {
    const down = await TestMailServer.start();
    const url = down.url;
    await down.stop();
    const sender = new OutboxSender({
      db: app.gatehouse.db,
      transport: new SmtpTransport(url, { mailFrom: 'a@gatehouse.test', publicUrl: 'http://gatehouse.test' }),
      log: app.log,
      pollMs: 3_600_000,
      retryBaseMs: 600_000,
      maxAttempts: 3,
    });
    const id = await queue(`${uniqueName()}@example.com`);
    try {
      await makeDue(id);
      await sender.drain();
      const first = await row(id);
      assert.equal(first.status, 'pending');
      assert.equal(first.attempts, 1);
      const firstWait = first.next_attempt_at.getTime() - Date.now();
      assert.ok(firstWait > 500_000 && firstWait <= 600_000, `first wait ${firstWait}`);

      // Not due yet: another pass leaves it alone.
      await sender.deliverDue();
      assert.equal((await row(id)).attempts, 1);

      await makeDue(id);
      await sender.drain();
      const second = await row(id);
      assert.equal(second.attempts, 2);
      const secondWait = second.next_attempt_at.getTime() - Date.now();
      assert.ok(secondWait > 1_100_000 && secondWait <= 1_200_000, `second wait ${secondWait}`);

      await makeDue(id);
      await sender.drain();
      const third = await row(id);
      assert.equal(third.status, 'failed');
      assert.equal(third.attempts, 3);
      assert.match(String(third.last_error), /ECONNECTION|ECONNREFUSED/);
    } finally {
      await sender.stop();
    }
  });

  test('an SMTP login failure keeps the mail waiting and never records or logs the password', async () => {
    const password = `pw-${uniqueName()}`;
    const server = await TestMailServer.start({ auth: { user: 'gatehouse', pass: 'the-right-one' } });
    const logs = logCapture();
    const log = pino({ level: 'debug' }, logs.stream);
    const smtpUrl = `smtp://gatehouse:${password}@127.0.0.1:${server.port}`;
    const sender = new OutboxSender({
      db: app.gatehouse.db,
      transport: createMailTransport({
        smtpUrl,
        mailFrom: 'a@gatehouse.test',
        publicUrl: 'http://gatehouse.test',
        dataDir: '/nonexistent',
        log,
      }),
      log,
      pollMs: 3_600_000,
      retryBaseMs: 600_000,
      maxAttempts: 3,
      secrets: [password],
    });
    const to = `${uniqueName()}@example.com`;
    const id = await queue(to);
    try {
      await makeDue(id);
      await sender.drain();
      const failed = await row(id);
      assert.equal(failed.status, 'pending', 'a login failure is configuration to fix, not a lost mail');
      assert.match(String(failed.last_error), /EAUTH/);
      assert.ok(!String(failed.last_error).includes(password));
      assert.ok(logs.lines.length > 0);
      for (const line of logs.lines) assert.ok(!line.includes(password), `password leaked: ${line}`);
      assert.deepEqual(server.to(to), []);
    } finally {
      await sender.stop();
      await server.stop();
    }
  });

  test('two senders on one database deliver each mail exactly once', async () => {
    const smtp = await TestMailServer.start();
    const senders = [1, 2].map(
      () =>
        new OutboxSender({
          db: app.gatehouse.db,
          transport: new SmtpTransport(smtp.url, { mailFrom: 'a@gatehouse.test', publicUrl: 'http://gatehouse.test' }),
          log: app.log,
          pollMs: 3_600_000,
          retryBaseMs: 600_000,
          maxAttempts: 3,
          batchSize: 5,
        }),
    );
    const recipients = Array.from({ length: 30 }, () => `${uniqueName('multi')}@example.com`);
    try {
      const ids = [];
      for (const to of recipients) ids.push(await queue(to));
      await Promise.all(senders.map((s) => s.drain()));
      await Promise.all(senders.map((s) => s.drain()));
      for (const to of recipients) assert.equal(smtp.to(to).length, 1, to);
      const rows = await app.gatehouse.db.selectFrom('email_outbox').selectAll().where('id', 'in', ids).execute();
      assert.equal(rows.length, recipients.length);
      for (const r of rows) {
        assert.equal(r.status, 'sent');
        assert.equal(r.attempts, 1);
      }
    } finally {
      await Promise.all(senders.map((s) => s.stop()));
      await smtp.stop();
    }
  });
});

describe('outbox lifecycle', () => {
  test('a commit that queues mail kicks the sender: delivery does not wait for the next poll', async () => {
    const smtp = await TestMailServer.start();
    const app = await startApp({
      SMTP_URL: smtp.url,
      OUTBOX_POLL_MS: '3600000',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
    try {
      const user = newUser();
      assert.equal((await register(app, user)).statusCode, 201);
      const [mail] = await smtp.waitFor(String(user.email));
      assert.equal(mail?.subject, 'Verify your email address');
    } finally {
      await app.close();
      await smtp.stop();
    }
  });

  test('closing the app flushes mail that is due', async () => {
    const smtp = await TestMailServer.start();
    const app = await startApp({
      SMTP_URL: smtp.url,
      OUTBOX_POLL_MS: '3600000',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    });
    const to = `${uniqueName()}@example.com`;
    try {
      // Queued without a kick, as a flow of another instance would leave it.
      await queueMail(app.gatehouse.db, {
        to,
        template: 'verify_email',
        languageCode: 'en',
        data: { name: 'x', link: 'http://gatehouse.test/verify-email?token=abc' },
      });
      assert.deepEqual(smtp.to(to), []);
    } finally {
      await app.close();
    }
    assert.equal(smtp.to(to).length, 1);
    await smtp.stop();
  });

  test('without SMTP_URL the development sink writes DATA_DIR/mail/<id>.eml and logs the link', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-mail-'));
    const logs = logCapture();
    const app = await startApp(
      // JSON lines, to read the sink's fields back (development logs pretty by default).
      { ENVIRONMENT: 'development', LOG_FORMAT: 'json', DATA_DIR: dataDir, REDIS_KEY_PREFIX: `t:${uniqueName()}:` },
      { logger: { level: 'info', stream: logs.stream } },
    );
    try {
      const user = newUser({ first_name: 'Grace' });
      const res = await register(app, user);
      assert.equal(res.statusCode, 201, res.body);
      await app.gatehouse.outbox.drain();
      const [row] = await outboxRows(app, String(user.email));
      assert.equal(row?.status, 'sent');
      const eml = await readFile(join(dataDir, 'mail', `${row?.id}.eml`));
      const parsed = await simpleParser(eml);
      assert.equal(parsed.subject, 'Verify your email address');
      assert.match(parsed.text ?? '', /Hello Grace,/);
      assert.match(String(parsed.html), /<p>Hello Grace,<\/p>/);
      const link = /http:\/\/gatehouse\.test\/verify-email\?token=[\w-]+/.exec(parsed.text ?? '')?.[0];
      assert.ok(link);
      // The same mail as text beside it, so that `grep` finds the link; both readable by the owner only.
      const text = await readFile(join(dataDir, 'mail', `${row?.id}.txt`), 'utf8');
      assert.match(
        text,
        new RegExp(`^To: ${String(user.email).replace('.', '\\.')}\nSubject: Verify your email address\n`),
      );
      assert.ok(text.includes(link));
      assert.equal((await stat(join(dataDir, 'mail', `${row?.id}.txt`))).mode & 0o777, 0o600);
      assert.equal((await stat(join(dataDir, 'mail', `${row?.id}.eml`))).mode & 0o777, 0o600);
      assert.equal((await stat(join(dataDir, 'mail'))).mode & 0o777, 0o700);
      const line = logs.lines.find((l) => l.includes('development mail sink'));
      assert.ok(line, 'expected the sink log line');
      const logged = JSON.parse(line);
      assert.equal(logged.mail.link, link);
      assert.equal(logged.mail.to, user.email);
      // The link in the log works: it verifies the address.
      const verified = await app.inject({
        method: 'POST',
        url: '/api/v1/verify-email',
        payload: { token: tokenFrom(link) },
      });
      assert.equal(verified.statusCode, 200, verified.body);
      assert.deepEqual(json(verified), { email_verified: true });
    } finally {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('development sink outside ENVIRONMENT=development', () => {
  test('writes the .eml file but keeps the link out of the log, as test and CI logs are often shared', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-mail-'));
    const logs = logCapture();
    const app = await startApp(
      { DATA_DIR: dataDir, REDIS_KEY_PREFIX: `t:${uniqueName()}:` },
      { logger: { level: 'info', stream: logs.stream } },
    );
    try {
      assert.equal(app.gatehouse.config.environment, 'test');
      const user = newUser();
      assert.equal((await register(app, user)).statusCode, 201);
      await app.gatehouse.outbox.drain();
      const [row] = await outboxRows(app, String(user.email));
      const parsed = await simpleParser(await readFile(join(dataDir, 'mail', `${row?.id}.eml`)));
      const token = tokenFrom(
        /http:\/\/gatehouse\.test\/verify-email\?token=[\w-]+/.exec(parsed.text ?? '')?.[0] ?? '',
      );
      const line = logs.lines.find((l) => l.includes('development mail sink'));
      assert.ok(line, 'expected the sink log line');
      assert.equal(JSON.parse(line).mail.link, undefined);
      for (const l of logs.lines) assert.ok(!l.includes(token), `token leaked: ${l}`);
    } finally {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
