import assert from 'node:assert/strict';
import {
  accessSync,
  closeSync,
  constants,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AxeResults } from 'axe-core';
import type { FastifyInstance } from 'fastify';
import { type Browser, type BrowserContext, type BrowserContextOptions, chromium, type Page } from 'playwright-core';
import { startApp, uniqueName } from '../helpers.ts';
import { TestMailServer } from '../mail-server.ts';

/** Debian's Chromium (`apt-get install chromium`); `.ci/run` installs it when test/browser exists. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const ENABLE_BROWSER_TESTS = 'apt-get install chromium (or set CHROMIUM_PATH to a Chromium binary)';

/** Whether CHROMIUM is an executable file: what the browser tests need to run at all. */
function chromiumInstalled(): boolean {
  try {
    accessSync(CHROMIUM, constants.X_OK);
    return statSync(CHROMIUM).isFile();
  } catch {
    return false;
  }
}

/** Why the browser tests cannot run: in CI a failure, elsewhere what launchChromium throws if called anyway. */
function noChromium(): Error {
  const where = process.env.CI === 'true' ? ' in CI (CI=true)' : '';
  return new Error(`Chromium is required${where}, but there is none at ${CHROMIUM}: ${ENABLE_BROWSER_TESTS}`);
}

/**
 * The `skip` option of a describe() whose tests need Chromium: false when
 * CHROMIUM is installed; otherwise the reason to skip, after printing once
 * per test run which browser tests are skipped and how to enable them. In CI
 * (CI=true) a missing Chromium is no reason to skip: it throws, failing the
 * file before anything is started.
 */
export function skipWithoutChromium(): string | false {
  if (chromiumInstalled()) return false;
  if (process.env.CI === 'true') throw noChromium();
  if (firstInThisRun('no-chromium')) {
    process.stdout.write(
      `Browser tests skipped, no Chromium at ${CHROMIUM}: ${browserTestFiles().join(', ')}.\n` +
        `To run them: ${ENABLE_BROWSER_TESTS}.\n`,
    );
  }
  return `needs Chromium, none at ${CHROMIUM}`;
}

/** The test files of this directory that need Chromium (those that skip without it). */
function browserTestFiles(): string[] {
  const dir = dirname(fileURLToPath(import.meta.url));
  return readdirSync(dir)
    .filter((name) => name.endsWith('.test.ts'))
    .filter((name) => readFileSync(join(dir, name), 'utf8').includes('{ skip: skipWithoutChromium() }'))
    .map((name) => `test/browser/${name}`)
    .sort();
}

/**
 * True for the first test file of this `node --test` run to ask about
 * `topic`. Each file is a process of its own whose parent is the runner, so
 * the first one to create a marker named after the runner wins; a file run by
 * itself (not under a runner) is always first.
 */
function firstInThisRun(topic: string): boolean {
  if (!process.env.NODE_TEST_CONTEXT) return true;
  const dir = join(tmpdir(), 'gatehouse-test-notices');
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(dir)) {
    // Markers of earlier runs: a day old is long finished.
    const path = join(dir, name);
    const modified = statSync(path, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
    if (Date.now() - modified > 86_400_000) rmSync(path, { force: true });
  }
  try {
    closeSync(openSync(join(dir, `${topic}-${process.ppid}-${startTime(process.ppid)}`), 'wx'));
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/** When a process started (Linux: field 22 of /proc/<pid>/stat), so that a reused pid names another run. */
function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

/** Chromium at CHROMIUM; a missing one is a clear failure (suites skip before this where that is allowed). */
export async function launchChromium(): Promise<Browser> {
  if (!chromiumInstalled()) throw noChromium();
  return chromium.launch({
    executablePath: CHROMIUM,
    // A binary that starts but never answers fails the suite instead of holding it.
    timeout: 30_000,
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

/**
 * What a suite started (servers, browsers), each with the way to close it.
 * Start them one after the other through `start`, and call `closeAll` in
 * after(): whatever failed before, everything that did start is closed, the
 * last started first, so that no test process is held open.
 */
export class Started {
  readonly #closers: (() => Promise<void>)[] = [];

  async start<T>(start: () => Promise<T>, close: (started: T) => Promise<void>): Promise<T> {
    const started = await start();
    this.#closers.push(() => close(started));
    return started;
  }

  async closeAll(): Promise<void> {
    const errors: unknown[] = [];
    for (const close of this.#closers.splice(0).reverse()) {
      try {
        await close();
      } catch (error) {
        errors.push(error);
      }
    }
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, 'several things failed to close');
  }
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
  /** `http://127.0.0.1:<port>` (or `localhost`): PUBLIC_URL, so that mailed links lead back here. */
  origin: string;
  close(): Promise<void>;
}

/**
 * Gatehouse listening on a real loopback port, its mail going over SMTP to a test server.
 * `host: 'localhost'` names it so (a WebAuthn relying party cannot be an IP address).
 */
export async function startLiveGatehouse(
  env: Record<string, string> = {},
  options: { host?: '127.0.0.1' | 'localhost' } = {},
): Promise<LiveGatehouse> {
  const started = new Started();
  try {
    const smtp = await started.start(
      () => TestMailServer.start(),
      (smtp) => smtp.stop(),
    );
    const port = await freePort();
    const origin = `http://${options.host ?? '127.0.0.1'}:${port}`;
    const app = await started.start(
      () =>
        startApp({
          PUBLIC_URL: origin,
          SMTP_URL: smtp.url,
          OUTBOX_POLL_MS: '50',
          OUTBOX_RETRY_BASE_MS: '50',
          REDIS_KEY_PREFIX: `t:${uniqueName()}:`,
          RATE_LIMIT_FORGOT_PASSWORD: '100000/1h',
          RATE_LIMIT_RESEND_VERIFICATION: '100000/1h',
          ...env,
        }),
      (app) => app.close(),
    );
    await app.listen({ host: '127.0.0.1', port });
    return { app, smtp, origin, close: () => started.closeAll() };
  } catch (error) {
    // What did start is closed before the failure is passed on; a failure to close is reported with it.
    await started.closeAll().catch((closeError: unknown) => {
      throw new AggregateError([error, closeError], 'starting Gatehouse failed, and so did closing what had started');
    });
    throw error;
  }
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

/** Where the browser tests write the pages' screenshots, and the widths they are taken at. */
export const SCREENSHOTS = fileURLToPath(new URL('../../docs/screenshots/', import.meta.url));
const WIDTHS = [
  { width: 375, height: 812 },
  { width: 1280, height: 900 },
];

/** Clicks the button and waits for the page its POST loads; the POST's status. */
export async function submit(page: Page, button: string): Promise<number> {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.getByRole('button', { name: button, exact: true }).click(),
  ]);
  await page.waitForLoadState();
  return response.status();
}

/**
 * axe-core finds nothing serious on the page as it is; then, with what differs
 * between runs (unique names, times) replaced by fixed demo text, so that
 * screenshots change only with the pages, a full-page screenshot at each width
 * with no sideways scrolling. `inputs: false` leaves form values alone (a page
 * whose form is submitted afterwards). The viewport ends at 1280 × 900.
 */
export async function checkAndPhotograph(
  page: Page,
  name: string,
  demo: [RegExp, string][],
  options: { inputs?: boolean } = {},
): Promise<void> {
  const violations = await seriousViolations(page);
  assert.deepEqual(violations, [], `${name}: ${JSON.stringify(violations, null, 2)}`);
  await page.evaluate(
    ([replacements, inputs]) => {
      const apply = (text: string) =>
        replacements.reduce((t, [pattern, by]) => t.replace(new RegExp(pattern, 'g'), by), text);
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) node.nodeValue = apply(node.nodeValue ?? '');
      if (!inputs) return;
      document.querySelectorAll('input').forEach((input) => {
        input.value = apply(input.value);
      });
    },
    [demo.map(([pattern, by]) => [pattern.source, by] as [string, string]), options.inputs !== false] as const,
  );
  for (const size of WIDTHS) {
    await page.setViewportSize(size);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name} at ${size.width}px scrolls sideways by ${overflow}px`);
    await page.screenshot({ path: `${SCREENSHOTS}${name}-${size.width}.png`, fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });
}
