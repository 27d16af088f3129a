import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { NodeFS } from '@electric-sql/pglite/nodefs';

/** Group and other permission bits: nothing Gatehouse writes under DATA_DIR keeps any of them. */
const SHARED_BITS = 0o077;

type EmscriptenOptions = Parameters<NodeFS['init']>[1];
type PostgresModule = Parameters<NonNullable<EmscriptenOptions['preRun']>[number]>[0];
type ModeAttributes = { mode?: number | null };
type SetAttr<T> = (target: T, attributes: ModeAttributes) => void;
/** The parts of Emscripten's NODEFS that create files or change their modes. */
interface NodeFsOperations {
  node_ops: { mknod: (parent: unknown, name: string, mode: number, dev: number) => unknown; setattr: SetAttr<unknown> };
  stream_ops: { setattr: SetAttr<unknown> };
}

const privateMode = <T>(setattr: SetAttr<T>): SetAttr<T> =>
  function setattrPrivate(target, attributes) {
    const mode = attributes.mode;
    setattr(target, typeof mode === 'number' ? { ...attributes, mode: mode & ~SHARED_BITS } : attributes);
  };

/**
 * PGlite's NodeFS creates the database's files 0666 and chmods them to the
 * mode PostgreSQL asks of its virtual file system (0666 again), which no
 * process umask narrows. This one drops group and other bits from every
 * mknod, chmod and fchmod, so directories are 0700 and files 0600.
 */
class PrivateNodeFS extends NodeFS {
  override async init(
    pg: Parameters<NodeFS['init']>[0],
    options: EmscriptenOptions,
  ): Promise<{ emscriptenOpts: EmscriptenOptions }> {
    const { emscriptenOpts } = await super.init(pg, options);
    const restrict = (module: PostgresModule) => {
      const nodefs = module.NODEFS as unknown as NodeFsOperations;
      const { mknod } = nodefs.node_ops;
      nodefs.node_ops.mknod = (parent, name, mode, dev) => mknod(parent, name, mode & ~SHARED_BITS, dev);
      nodefs.node_ops.setattr = privateMode(nodefs.node_ops.setattr);
      nodefs.stream_ops.setattr = privateMode(nodefs.stream_ops.setattr);
    };
    // Before NodeFS's own preRun mounts the directory.
    return { emscriptenOpts: { ...emscriptenOpts, preRun: [restrict, ...(emscriptenOpts.preRun ?? [])] } };
  }
}

/**
 * The embedded database's file system: `dir` is made 0700 and whatever an
 * earlier version left readable by others in it is made private first.
 */
export function privateDatabaseFiles(dir: string): NodeFS {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  makePrivate(dir);
  return new PrivateNodeFS(dir);
}

/** Drops group and other bits from `path` and everything beneath it (symbolic links are left alone). */
function makePrivate(path: string): void {
  const stats = lstatSync(path);
  if (stats.isSymbolicLink()) return;
  if ((stats.mode & SHARED_BITS) !== 0) chmodSync(path, stats.mode & 0o700);
  if (stats.isDirectory()) for (const name of readdirSync(path)) makePrivate(join(path, name));
}
