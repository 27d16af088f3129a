import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitUntil } from './ports.ts';

const MAIN = new URL('../../src/main.ts', import.meta.url).pathname;

/**
 * `node src/main.ts` as its own process, configured by its environment as
 * in production, listening on a spare loopback port: for tests that kill it.
 */
export class GatehouseProcess {
  readonly url: string;
  readonly #child: ChildProcess;
  readonly #dataDir: string;
  readonly #stderr: string[] = [];

  private constructor(child: ChildProcess, url: string, dataDir: string) {
    this.#child = child;
    this.url = url;
    this.#dataDir = dataDir;
    child.stderr?.on('data', (chunk: Buffer) => this.#stderr.push(String(chunk)));
  }

  static async start(env: Record<string, string>): Promise<GatehouseProcess> {
    const port = await freePort();
    const dataDir = await mkdtemp(join(tmpdir(), 'gatehouse-data-'));
    const child = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? '', ...env, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir },
      cwd: dataDir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const server = new GatehouseProcess(child, `http://127.0.0.1:${port}`, dataDir);
    await waitUntil(
      `gatehouse on port ${port}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`gatehouse exited with ${child.exitCode}: ${server.stderr}`);
        const response = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(1_000) });
        return response.ok;
        // The embedded database's first start (initdb and migrations) takes long on a busy machine.
      },
      90_000,
    ).catch((error: Error) => {
      child.kill('SIGKILL');
      throw new Error(`${error.message}\n${server.stderr}`);
    });
    return server;
  }

  /** Its DATA_DIR: the embedded database (unless DATABASE_URL was given), keys and mail. */
  get dataDir(): string {
    return this.#dataDir;
  }

  get stderr(): string {
    return this.#stderr.join('');
  }

  /** SIGKILL: no shutdown hook runs, in-flight transactions are cut off wherever they are. */
  async kill(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGKILL');
    await exited;
  }

  /** SIGTERM, as an operator stops it: waits for the graceful shutdown to finish. */
  async stop(): Promise<number | null> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return this.#child.exitCode;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGTERM');
    const [code] = (await exited) as [number | null];
    return code;
  }

  async destroy(): Promise<void> {
    await this.kill();
    await rm(this.#dataDir, { recursive: true, force: true });
  }
}
