import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { BuildAppOptions } from '../src/app.ts';
import { json, newUser, startApp, uniqueName } from './helpers.ts';

export interface ReceivedMail {
  /** RCPT TO addresses, lower-cased. */
  recipients: string[];
  messageId: string | undefined;
  subject: string;
  from: string;
  text: string;
  html: string;
  /** Every http(s) link in the plain-text and HTML parts, HTML entities decoded. */
  links: string[];
  headers: Map<string, unknown>;
}

export interface TestMailServerOptions {
  /** Require AUTH with these credentials. */
  auth?: { user: string; pass: string };
  /** Answer RCPT TO for matching addresses with a permanent 550. */
  rejectRecipient?: (address: string) => boolean;
}

/**
 * A real SMTP server on a loopback port (smtp-server), parsing each message
 * with mailparser: tests receive mail the way a mailbox would.
 */
export class TestMailServer {
  readonly received: ReceivedMail[] = [];
  readonly #options: TestMailServerOptions;
  #server: SMTPServer | undefined;
  #port = 0;
  #listeners = new Set<() => void>();

  private constructor(options: TestMailServerOptions) {
    this.#options = options;
  }

  static async start(options: TestMailServerOptions = {}): Promise<TestMailServer> {
    const server = new TestMailServer(options);
    await server.#listen();
    return server;
  }

  get port(): number {
    return this.#port;
  }

  /** The SMTP_URL that reaches this server. */
  get url(): string {
    const auth = this.#options.auth;
    const credentials = auth ? `${encodeURIComponent(auth.user)}:${encodeURIComponent(auth.pass)}@` : '';
    return `smtp://${credentials}127.0.0.1:${this.#port}`;
  }

  /** Mail received for one address. */
  to(address: string): ReceivedMail[] {
    const wanted = address.toLowerCase();
    return this.received.filter((m) => m.recipients.includes(wanted));
  }

  /** Waits until `count` mails for `address` have arrived; fails with what did arrive after `timeoutMs`. */
  async waitFor(address: string, count = 1, timeoutMs = 20_000): Promise<ReceivedMail[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.to(address).length < count) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`expected ${count} mail(s) for ${address}, got ${this.to(address).length}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(left, 250));
        function done() {
          clearTimeout(timer);
          resolve();
        }
        this.#listeners.add(done);
      });
    }
    return this.to(address);
  }

  /** Closes the port: connections are refused until `restart()`. */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Listens again on the same port. */
  async restart(): Promise<void> {
    await this.#listen(this.#port);
  }

  async #listen(port = 0): Promise<void> {
    const { auth, rejectRecipient } = this.#options;
    const options: SMTPServerOptions = {
      logger: false,
      closeTimeout: 100,
      disabledCommands: auth ? ['STARTTLS'] : ['STARTTLS', 'AUTH'],
      authOptional: !auth,
      allowInsecureAuth: true,
      onAuth: (credentials, _session, callback) => {
        if (auth && credentials.username === auth.user && credentials.password === auth.pass) {
          callback(null, { user: credentials.username });
        } else {
          callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
        }
      },
      onRcptTo: (address, _session, callback) => {
        if (rejectRecipient?.(address.address)) {
          callback(Object.assign(new Error('Mailbox unavailable'), { responseCode: 550 }));
        } else {
          callback();
        }
      },
      onData: (stream, session, callback) => {
        simpleParser(stream)
          .then((parsed) => {
            const text = parsed.text ?? '';
            const html = typeof parsed.html === 'string' ? parsed.html : '';
            this.received.push({
              recipients: session.envelope.rcptTo.map((r) => r.address.toLowerCase()),
              messageId: parsed.messageId,
              subject: parsed.subject ?? '',
              from: parsed.from?.text ?? '',
              text,
              html,
              links: extractLinks(text, html),
              headers: parsed.headers,
            });
            for (const listener of this.#listeners) listener();
            this.#listeners.clear();
            callback();
          })
          .catch((error: Error) => callback(error));
      },
    };
    const server = new SMTPServer(options);
    await new Promise<void>((resolve, reject) => {
      server.server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.server.off('error', reject);
        resolve();
      });
    });
    this.#server = server;
    this.#port = (server.server.address() as AddressInfo).port;
  }
}

function extractLinks(text: string, html: string): string[] {
  const links = new Set<string>();
  for (const m of text.matchAll(/https?:\/\/[^\s<>"]+/g)) links.add(m[0]);
  for (const m of html.matchAll(/href="([^"]*)"/g)) links.add(decodeEntities(m[1] as string));
  return [...links];
}

function decodeEntities(value: string): string {
  return value
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');
}

/** The one-time token carried by a mailed link. */
export function tokenFrom(link: string): string {
  const token = new URL(link).searchParams.get('token');
  if (!token) throw new Error(`no token in ${link}`);
  return token;
}

/** An app whose mail goes over SMTP to a fresh TestMailServer, polling and retrying fast. */
export async function startAppWithMail(
  env: Record<string, string | undefined> = {},
  options: BuildAppOptions = {},
): Promise<{ app: FastifyInstance; smtp: TestMailServer; close: () => Promise<void> }> {
  const smtp = await TestMailServer.start();
  const app = await startApp(
    {
      SMTP_URL: smtp.url,
      OUTBOX_POLL_MS: '50',
      OUTBOX_RETRY_BASE_MS: '50',
      REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
      RATE_LIMIT_FORGOT_PASSWORD: '100000/1h',
      RATE_LIMIT_RESEND_VERIFICATION: '100000/1h',
      ...env,
    },
    options,
  ).catch(async (error: unknown) => {
    await smtp.stop();
    throw error;
  });
  return {
    app,
    smtp,
    close: async () => {
      await app.close();
      await smtp.stop();
    },
  };
}

/**
 * Registers over HTTP, waits for the verification mail and, unless `verify`
 * is false, verifies the address through the mailed link, as a user would.
 */
export async function registerByMail(
  app: FastifyInstance,
  smtp: TestMailServer,
  overrides: Record<string, unknown> = {},
  { verify = true }: { verify?: boolean } = {},
) {
  const user = newUser(overrides);
  const res = await app.inject({ method: 'POST', url: '/api/v1/register', payload: user });
  assert.equal(res.statusCode, 201, res.body);
  const [mail] = await smtp.waitFor(String(user.email));
  if (verify) {
    const link = mail?.links.find((l) => l.includes('/verify-email?token='));
    assert.ok(link, `no verification link in ${mail?.links.join(', ')}`);
    const verified = await app.inject({
      method: 'POST',
      url: '/api/v1/verify-email',
      payload: { token: tokenFrom(link) },
    });
    assert.equal(verified.statusCode, 200, verified.body);
  }
  return {
    ...user,
    id: Number(json(res).id),
    email: String(user.email),
    username: String(user.username),
    password: String(user.password),
  };
}
