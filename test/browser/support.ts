import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { AxeResults } from 'axe-core';
import type { FastifyInstance } from 'fastify';
import { type Browser, type BrowserContext, type BrowserContextOptions, chromium, type Page } from 'playwright-core';
import { startApp, uniqueName } from '../helpers.ts';
import { TestMailServer } from '../mail-server.ts';

/** Debian's Chromium (`apt-get install chromium`); `.ci/run` installs it when test/browser exists. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--headless',
      '--disable-gpu',
      '--no-first-run',
      '--disable-sync',
    ],
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface LiveGatehouse {
  app: FastifyInstance;
  smtp: TestMailServer;
  /** `http://127.0.0.1:<port>`: PUBLIC_URL, so that mailed links lead back here. */
  origin: string;
  close(): Promise<void>;
}

/** Gatehouse listening on a real loopback port, its mail going over SMTP to a test server. */
export async function startLiveGatehouse(env: Record<string, string> = {}): Promise<LiveGatehouse> {
  const smtp = await TestMailServer.start();
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const app = await startApp({
    PUBLIC_URL: origin,
    SMTP_URL: smtp.url,
    OUTBOX_POLL_MS: '50',
    OUTBOX_RETRY_BASE_MS: '50',
    REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
    RATE_LIMIT_FORGOT_PASSWORD: '100000/1h',
    RATE_LIMIT_RESEND_VERIFICATION: '100000/1h',
    ...env,
  });
  await app.listen({ host: '127.0.0.1', port });
  return {
    app,
    smtp,
    origin,
    close: async () => {
      await app.close();
      await smtp.stop();
    },
  };
}

export async function newContext(browser: Browser, options: BrowserContextOptions = {}): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  context.setDefaultTimeout(20_000);
  context.setDefaultNavigationTimeout(30_000);
  return context;
}

/** Console messages about the Content-Security-Policy: there must be none on our own pages. */
export function cspViolations(page: Page): string[] {
  const messages: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) messages.push(message.text());
  });
  return messages;
}

const AXE_PATH = fileURLToPath(import.meta.resolve('axe-core/axe.min.js'));

export interface AxeViolation {
  id: string;
  impact: string | null | undefined;
  help: string;
  targets: string[];
}

/**
 * Runs axe-core on the page and returns the serious and critical violations.
 * The page's CSP forbids injected scripts: run it in a context made with `bypassCSP: true`.
 */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  await page.addScriptTag({ path: AXE_PATH });
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run(context: Document): Promise<AxeResults> } }).axe;
    const results = await axe.run(document);
    return results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      targets: v.nodes.map((n) => String(n.target)),
    }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** The newest link to `path` mailed to an address, waiting for it to arrive over SMTP. */
export async function mailedLink(
  smtp: TestMailServer,
  address: string,
  path: string,
  timeoutMs = 20_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const mails = smtp.to(address);
    const link = mails
      .flatMap((m) => m.links)
      .reverse()
      .find((l) => new URL(l).pathname.endsWith(`/${path}`));
    if (link) return link;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no ${path} link mailed to ${address}`);
    await smtp.waitFor(address, mails.length + 1, left).catch(() => undefined);
  }
}
