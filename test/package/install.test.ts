/**
 * The npm package as a host application gets it: `npm pack` (whose prepack
 * builds dist/), installed into a new application made of the README's
 * "Mount it in your Fastify application" section — its package.json, its
 * install command, its server.js as printed — and started with plain `node`:
 * under node_modules there is only JavaScript, so no type stripping is involved.
 *
 * It runs on this process's Node (24), and on every other Node it finds:
 * GATEHOUSE_TEST_NODES (paths to node binaries, separated like PATH) and the
 * system's /usr/bin/node. One below the supported floor (22) must be refused
 * by the bin with a clear message.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, relative } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { freePort, sleep } from '../support/ports.ts';

const REPO = join(import.meta.dirname, '..', '..');
const PACKAGE = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };
const FLOOR = 22;

interface NodeBinary {
  path: string;
  version: string;
  major: number;
}

function nodeBinaries(): NodeBinary[] {
  const requested = (process.env.GATEHOUSE_TEST_NODES ?? '').split(delimiter).filter(Boolean);
  for (const path of requested) assert.ok(existsSync(path), `GATEHOUSE_TEST_NODES names ${path}, which does not exist`);
  const seen = new Set<string>();
  const found: NodeBinary[] = [];
  for (const candidate of [process.execPath, ...requested, '/usr/bin/node']) {
    if (!existsSync(candidate)) continue;
    const path = realpathSync(candidate);
    if (seen.has(path)) continue;
    seen.add(path);
    const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim();
    found.push({ path, version, major: Number(version.slice(1).split('.')[0]) });
  }
  return found;
}

interface HostApp {
  packageJson: Record<string, unknown>;
  /** The arguments of the README's `npm install …` line. */
  install: string[];
  server: string;
}

/** The host application exactly as the README prints it. */
function readmeHostApp(): HostApp {
  const readme = readFileSync(join(REPO, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Mount it in your Fastify application\n');
  assert.notEqual(start, -1, 'the README has the section "Mount it in your Fastify application"');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const block = (language: string): string => {
    const match = section.match(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``));
    assert.ok(match?.[1], `the section has a ${language} block`);
    return match[1];
  };
  const installLine = block('sh')
    .split('\n')
    .find((line) => line.startsWith('npm install '));
  assert.ok(installLine, 'the section says what to install');
  return {
    packageJson: JSON.parse(block('json')) as Record<string, unknown>,
    install: installLine.split(/\s+/).slice(2),
    server: block('js'),
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

function stop(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** Runs a command to its end, killed after `timeoutMs`. */
function run(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }) {
  return new Promise<Run>((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const timer = setTimeout(() => {
      stderr += `\n(killed after ${options.timeoutMs} ms)`;
      stop(child);
    }, options.timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * npm as a developer runs it: this Node first on the PATH, and none of the
 * npm_* variables `npm test` sets (npm_config_local_prefix would point a
 * nested npm at this repository).
 */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!/^npm_/i.test(key)) env[key] = value;
  env.PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
  return env;
}

function filesUnder(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name), base) : [relative(base, join(dir, entry.name))],
  );
}

type Body = Record<string, unknown>;

describe(`the ${PACKAGE.name} package in a host application`, { timeout: 300_000 }, () => {
  const nodes = nodeBinaries();
  let work: string;
  let host: string;
  let packed: { filename: string; size: number; files: { path: string }[] };

  before(
    async () => {
      work = mkdtempSync(join(tmpdir(), 'gatehouse-package-'));
      const pack = await run('npm', ['pack', '--json', '--pack-destination', work], {
        cwd: REPO,
        env: npmEnv(),
        timeoutMs: 120_000,
      });
      assert.equal(pack.code, 0, `npm pack failed:\n${pack.stderr}`);
      const [tarball] = JSON.parse(pack.stdout) as (typeof packed)[];
      assert.ok(tarball, `npm pack printed no tarball:\n${pack.stdout}`);
      packed = tarball;

      const app = readmeHostApp();
      host = join(work, 'my-app');
      mkdirSync(host);
      writeFileSync(join(host, 'package.json'), JSON.stringify(app.packageJson, null, 2));
      writeFileSync(join(host, 'server.js'), app.server);
      // The README's install line, with the fresh tarball in place of the registry's copy.
      assert.ok(app.install.includes(PACKAGE.name), `the README installs ${PACKAGE.name}`);
      const install = app.install.map((name) => (name === PACKAGE.name ? join(work, packed.filename) : name));
      // Its dependencies are in npm's cache since the project's own install.
      const installed = await run(
        'npm',
        ['install', ...install, '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'],
        { cwd: host, env: npmEnv(), timeoutMs: 180_000 },
      );
      assert.equal(installed.code, 0, `npm install failed:\n${installed.stderr}`);
    },
    { timeout: 300_000 },
  );

  after(() => {
    for (const child of children) stop(child);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the tarball holds the build and what it reads, and nothing else', () => {
    const paths = packed.files.map((file) => file.path);
    for (const needed of [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'bin/gatehouse.mjs',
      'dist/plugin.js',
      'dist/plugin.d.ts',
      'dist/app.js',
      'dist/cli.js',
      'dist/db/migrations/0001_initial.js',
      'dist/views/layout.eta',
      'dist/views/styles.css',
    ])
      assert.ok(paths.includes(needed), `${needed} is packed`);
    const stray = paths.filter(
      (path) =>
        !/^dist\/.+\.(js|d\.ts|eta|css)$/.test(path) &&
        !['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE', 'bin/gatehouse.mjs'].includes(path),
    );
    assert.deepEqual(stray, [], 'no sources, tests, benchmarks, docs or screenshots');
    assert.ok(packed.size < 500_000, `the tarball is small (${packed.size} bytes)`);

    const installed = join(host, 'node_modules', PACKAGE.name);
    const typescript = filesUnder(installed).filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'));
    assert.deepEqual(typescript, [], 'nothing under node_modules needs type stripping');
    const manifest = JSON.parse(readFileSync(join(host, 'package.json'), 'utf8')) as {
      type: string;
      dependencies: Record<string, string>;
    };
    assert.equal(manifest.type, 'module');
    assert.match(manifest.dependencies[PACKAGE.name] ?? '', /^file:/, 'the host depends on the tarball');
  });

  test('both entry points import as plain JavaScript', async () => {
    const probe = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const plugin = await import('${PACKAGE.name}'); const app = await import('${PACKAGE.name}/app');
         console.log([typeof plugin.default, typeof plugin.requireUser, typeof plugin.loadConfig, typeof app.buildApp].join(' '));`,
      ],
      { cwd: host, env: { PATH: process.env.PATH }, timeoutMs: 30_000 },
    );
    assert.equal(probe.code, 0, probe.stderr);
    assert.equal(probe.stdout, 'function function function function\n');
  });

  for (const node of nodes.filter((n) => n.major >= FLOOR)) {
    test(`on Node ${node.version}: the installed bin, then the README's server.js registers, logs in and guards a route`, async () => {
      const bin = join(host, 'node_modules', '.bin', 'gatehouse');
      const version = await run(node.path, [bin, '--version'], { cwd: host, env: {}, timeoutMs: 30_000 });
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout, `${PACKAGE.version}\n`);
      const key = await run(node.path, [bin, 'keys', 'generate'], { cwd: host, env: {}, timeoutMs: 30_000 });
      assert.equal(key.code, 0, key.stderr);
      assert.equal(Buffer.from(key.stdout.trim(), 'base64url').length, 32);
      assert.equal(key.stderr, '', 'no warnings');

      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const server = spawn(node.path, ['server.js'], {
        cwd: host,
        // The embedded default: no DATABASE_URL, so PGlite in DATA_DIR; mail to the log.
        env: {
          PATH: process.env.PATH,
          PORT: String(port),
          HOST: '127.0.0.1',
          PUBLIC_URL: url,
          DATA_DIR: join(work, `data-${node.major}`),
          OUTBOX_POLL_MS: '100',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(server);
      let stdout = '';
      let stderr = '';
      server.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      server.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const exited = once(server, 'exit');
      const output = () => `\n--- stderr:\n${stderr.slice(-3000)}\n--- stdout:\n${stdout.slice(-3000)}`;
      const call = async (path: string, init: RequestInit = {}, token?: string) => {
        const headers = new Headers(init.headers);
        if (token) headers.set('authorization', `Bearer ${token}`);
        if (init.body) headers.set('content-type', 'application/json');
        const response = await fetch(`${url}${path}`, { ...init, headers, signal: AbortSignal.timeout(15_000) });
        const text = await response.text();
        const type = response.headers.get('content-type') ?? '';
        return { status: response.status, type, text, body: (type.includes('json') ? JSON.parse(text) : {}) as Body };
      };

      try {
        const deadline = Date.now() + 60_000;
        for (;;) {
          assert.equal(server.exitCode, null, `server.js exited early${output()}`);
          const ready = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
            (r) => r.ok,
            () => false,
          );
          if (ready) break;
          assert.ok(Date.now() < deadline, `server.js did not answer within 60 s${output()}`);
          await sleep(200);
        }

        const anonymous = await call('/reports');
        assert.equal(anonymous.status, 401, anonymous.text);
        assert.match(anonymous.type, /^application\/problem\+json/);
        assert.equal(anonymous.body.code, 'UNAUTHORIZED');

        // The pages render from the templates and stylesheet copied into dist/.
        const page = await call('/register');
        assert.equal(page.status, 200, page.text);
        assert.match(page.text, /<form[^>]+method="post"/i);
        const css = await call('/gatehouse.css');
        assert.equal(css.status, 200);
        assert.match(css.type, /^text\/css/);
        assert.ok(css.text.length > 1000, 'the stylesheet is served');

        const name = `u${randomBytes(5).toString('hex')}`;
        const password = `Kx9#${randomBytes(6).toString('hex')}Vq!`;
        const registered = await call('/api/v1/register', {
          method: 'POST',
          body: JSON.stringify({
            email: `${name}@example.com`,
            username: name,
            password,
            organization_name: `Org ${name}`,
          }),
        });
        assert.equal(registered.status, 201, registered.text);
        const userUuid = String(registered.body.uuid);
        const organizationUuid = String((registered.body.organization as Body).uuid);

        const login = () =>
          call('/api/v1/login/json', {
            method: 'POST',
            body: JSON.stringify({ email: `${name}@example.com`, password }),
          });
        const unverified = await login();
        assert.equal(unverified.status, 403, unverified.text);
        assert.equal(unverified.body.code, 'EMAIL_NOT_VERIFIED');

        // The verification link, as a developer follows it: from the mail's log line.
        let link: string | undefined;
        const mailDeadline = Date.now() + 20_000;
        while (!link) {
          link = stdout
            .split('\n')
            .filter((line) => line.startsWith('{'))
            .map((line) => JSON.parse(line) as { mail?: { to?: string; link?: string } })
            .find((entry) => entry.mail?.to === `${name}@example.com` && entry.mail.link?.includes('/verify-email'))
            ?.mail?.link;
          assert.ok(link || Date.now() < mailDeadline, `no verification mail logged within 20 s${output()}`);
          if (!link) await sleep(100);
        }
        const token = new URL(link).searchParams.get('token');
        const verified = await call('/api/v1/verify-email', { method: 'POST', body: JSON.stringify({ token }) });
        assert.equal(verified.status, 200, verified.text);

        const loggedIn = await login();
        assert.equal(loggedIn.status, 200, loggedIn.text);
        const accessToken = String(loggedIn.body.access_token);

        const reports = await call('/reports', {}, accessToken);
        assert.equal(reports.status, 200, reports.text);
        assert.deepEqual(reports.body, { for: userUuid });
        const forged = await call('/reports', {}, `${accessToken.slice(0, -4)}AAAA`);
        assert.equal(forged.status, 401, forged.text);

        const scan = await call(`/api/v1/organizations/${organizationUuid}/scan`, { method: 'POST' }, accessToken);
        assert.equal(scan.status, 202, scan.text);
        const elsewhere = await call(`/api/v1/organizations/${randomUUID()}/scan`, { method: 'POST' }, accessToken);
        assert.equal(elsewhere.status, 404, elsewhere.text);

        // SIGTERM: the README's handler closes the app, and the process ends by itself.
        server.kill('SIGTERM');
        const [code, signal] = (await Promise.race([exited, sleep(20_000).then(() => ['timeout', null])])) as [
          number | string | null,
          string | null,
        ];
        assert.equal(code, 0, `server.js ended with ${code} ${signal}${output()}`);
        assert.doesNotMatch(stderr, /ExperimentalWarning|ERR_/, `no warnings or errors${output()}`);
      } finally {
        stop(server);
        children.delete(server);
      }
    });
  }

  for (const node of nodes.filter((n) => n.major < FLOOR)) {
    test(`on Node ${node.version}, below the floor, the bin says which Node it needs`, async () => {
      const bin = join(host, 'node_modules', '.bin', 'gatehouse');
      const res = await run(node.path, [bin, '--version'], { cwd: host, env: {}, timeoutMs: 30_000 });
      assert.equal(res.code, 1);
      assert.match(res.stderr, new RegExp(`needs Node\\.js ${FLOOR} or newer \\(this is ${node.version}\\)`));
    });
  }
});
