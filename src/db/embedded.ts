import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketHandler } from '@electric-sql/pglite-socket';

/**
 * The embedded database belongs to one process. That process serves it to
 * the others (the CLI, `gatehouse psql`, psql itself) over the PostgreSQL wire
 * protocol on a Unix socket beside the data directory; nothing is ever
 * written to one PGlite directory by two processes.
 *
 *   data/pglite          the database
 *   data/pglite.run/     0700: `owner.json` (pid and socket of the owner), `.s.PGSQL.5432`
 */

/** PostgreSQL clients find a Unix socket as `<directory>/.s.PGSQL.<port>`; the port only names the file. */
export const EMBEDDED_SOCKET_PORT = 5432;
/** The longest Unix socket path Linux accepts, less the terminating NUL. */
const SOCKET_PATH_MAX = 107;

export interface EmbeddedOwner {
  pid: number;
  /** The directory holding `.s.PGSQL.5432`, once the owner serves it. */
  socketDir: string | null;
}

export class EmbeddedInUseError extends Error {
  readonly owner: EmbeddedOwner;

  constructor(directory: string, owner: EmbeddedOwner) {
    super(
      `the embedded database ${directory} is in use by another Gatehouse process (pid ${owner.pid}); ` +
        'stop it first, or set DATA_DIR (or DATABASE_URL) to another directory',
    );
    this.owner = owner;
  }
}

export function runDirectory(pgliteDir: string): string {
  return `${resolve(pgliteDir)}.run`;
}

function ownerFile(pgliteDir: string): string {
  return join(runDirectory(pgliteDir), 'owner.json');
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The live process that owns the directory, if any (a crashed owner's file is stale and ignored). */
export function readOwner(pgliteDir: string): EmbeddedOwner | undefined {
  let owner: EmbeddedOwner;
  try {
    owner = JSON.parse(readFileSync(ownerFile(pgliteDir), 'utf8')) as EmbeddedOwner;
  } catch {
    return undefined;
  }
  return Number.isInteger(owner.pid) && alive(owner.pid) ? owner : undefined;
}

/**
 * Makes this process the owner of the directory, or throws EmbeddedInUseError
 * naming the live owner. The owner file is created exclusively, so of two
 * processes starting at once exactly one wins. Returns the release.
 */
export function claimDirectory(pgliteDir: string): { publish(socketDir: string): void; release(): void } {
  const run = runDirectory(pgliteDir);
  mkdirSync(run, { recursive: true, mode: 0o700 });
  chmodSync(run, 0o700);
  const file = ownerFile(pgliteDir);
  const write = (owner: EmbeddedOwner, flag: 'wx' | 'w') =>
    writeFileSync(file, JSON.stringify(owner), { flag, mode: 0o600 });
  for (;;) {
    try {
      write({ pid: process.pid, socketDir: null }, 'wx');
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = readOwner(pgliteDir);
      if (owner) throw new EmbeddedInUseError(resolve(pgliteDir), owner);
      rmSync(file, { force: true }); // left by an owner that crashed
    }
  }
  return {
    publish: (socketDir) => write({ pid: process.pid, socketDir }, 'w'),
    release: () => {
      if (readOwnerPid(file) === process.pid) rmSync(file, { force: true });
    },
  };
}

function readOwnerPid(file: string): number | undefined {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as EmbeddedOwner).pid;
  } catch {
    return undefined;
  }
}

/** A first-come first-served lock: each holder waits for the one before it to release. */
export class FifoLock {
  #tail: Promise<void> = Promise.resolve();

  async acquire(): Promise<() => void> {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    return release;
  }
}

const SIMPLE_QUERY = 0x51; // 'Q'
const SYNC = 0x53; // 'S'
const TERMINATE = 0x58; // 'X'

/**
 * PGlite has one backend. Socket clients and this process's own queries share
 * it through one lock: a client holds it from its first message until it
 * reaches a statement boundary (a simple query or a Sync of the extended
 * protocol) outside a transaction, so no one's statements ever run inside
 * another's transaction or between another's Parse and Sync.
 */
class SharedBackend {
  readonly #pglite: PGlite;
  readonly #lock: FifoLock;
  #holder: { handlerId: number; release: () => void } | undefined;
  /** Each client's messages in order, whatever the socket's chunking. */
  readonly #pending = new Map<number, Promise<unknown>>();

  constructor(pglite: PGlite, lock: FifoLock) {
    this.#pglite = pglite;
    this.#lock = lock;
  }

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    if (isStartup(message)) message = canonicalStartup(message);
    // A client leaving ends its connection, not the one backend everyone shares.
    if (message[0] === TERMINATE) return Promise.resolve(0);
    const previous = this.#pending.get(handlerId) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(() => this.#run(handlerId, message, onData));
    this.#pending.set(handlerId, run);
    return run;
  }

  async #run(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    if (this.#holder?.handlerId !== handlerId) {
      const release = await this.#lock.acquire();
      this.#holder = { handlerId, release };
    }
    let bytes = 0;
    try {
      await this.#pglite.runExclusive(() =>
        this.#pglite.execProtocolRawStream(message, {
          onRawData: (data) => {
            bytes += data.length;
            onData(data);
          },
        }),
      );
    } finally {
      const type = message[0];
      // The startup message has no type byte: its first byte is the high byte of its length, 0.
      const boundary = type === 0 || type === SIMPLE_QUERY || type === SYNC;
      if (boundary && !this.#pglite.isInTransaction()) this.#releaseHolder(handlerId);
    }
    return bytes;
  }

  #releaseHolder(handlerId: number): void {
    if (this.#holder?.handlerId !== handlerId) return;
    const { release } = this.#holder;
    this.#holder = undefined;
    release();
  }

  clearQueueForHandler(handlerId: number): void {
    this.#pending.delete(handlerId);
  }

  /** A client gone in the middle of a transaction: roll it back and let the others in. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.#holder?.handlerId !== handlerId) return;
    try {
      if (this.#pglite.isInTransaction()) await this.#pglite.exec('rollback');
    } catch {
      // Nothing left to roll back; the next statement starts clean either way.
    } finally {
      this.#releaseHolder(handlerId);
    }
  }
}

const PROTOCOL_3 = 196608;

function isStartup(message: Uint8Array): boolean {
  return message.length >= 8 && new DataView(message.buffer, message.byteOffset).getInt32(4) === PROTOCOL_3;
}

/**
 * The one backend has one role and one database; whatever a client names
 * (psql sends the OS user), it is given those, so a startup never fails in
 * PGlite, whose single backend does not survive a FATAL.
 */
function canonicalStartup(message: Uint8Array): Uint8Array {
  const fields = Buffer.from(message.subarray(8)).toString('utf8').split('\0');
  const params = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length && fields[i] !== ''; i += 2)
    params.set(fields[i] as string, fields[i + 1] as string);
  const kept = [
    ['user', 'postgres'],
    ['database', 'postgres'],
  ];
  const encoding = params.get('client_encoding');
  if (encoding) kept.push(['client_encoding', encoding]);
  const body = Buffer.from(`${kept.map(([k, v]) => `${k}\0${v}\0`).join('')}\0`, 'utf8');
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(PROTOCOL_3, 4);
  body.copy(out, 8);
  return new Uint8Array(out);
}

type QueryQueue = ConstructorParameters<typeof PGLiteSocketHandler>[0]['queryQueue'];

export interface EmbeddedSocketServer {
  socketDir: string;
  close(): Promise<void>;
}

/** Serves the PGlite instance on `<runDirectory>/.s.PGSQL.5432`, sharing `lock` with this process's queries. */
export async function serveEmbedded(pglite: PGlite, lock: FifoLock, pgliteDir: string): Promise<EmbeddedSocketServer> {
  const socketDir = runDirectory(pgliteDir);
  const path = join(socketDir, `.s.PGSQL.${EMBEDDED_SOCKET_PORT}`);
  if (path.length > SOCKET_PATH_MAX) {
    throw new Error(`the socket path ${path} is longer than ${SOCKET_PATH_MAX} characters: use a shorter DATA_DIR`);
  }
  rmSync(path, { force: true }); // left by an owner that crashed; the owner file was checked before
  const backend = new SharedBackend(pglite, lock);
  const handlers = new Set<PGLiteSocketHandler>();
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    const handler = new PGLiteSocketHandler({ queryQueue: backend as unknown as QueryQueue, closeOnDetach: true });
    handlers.add(handler);
    handler.addEventListener('close', () => handlers.delete(handler));
    handler.attach(socket).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  return {
    socketDir,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...handlers].map((handler) => handler.detach(true)));
      for (const socket of sockets) socket.destroy();
      await closed;
      rmSync(path, { force: true });
    },
  };
}
