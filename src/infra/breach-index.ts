import { createHash } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  read,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { endianness } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * An on-disk index of breached passwords, for BREACH_CHECK=offline.
 *
 * Each password is the first 64 bits of its SHA-1. The top `fanoutBits` of
 * those select a bucket; a small table (4 bytes per bucket, kept in memory)
 * says where each bucket's records start. A record is the next 40 bits,
 * 5 bytes, sorted within the bucket. A lookup is one `pread` of one bucket
 * (a few dozen records) and a binary search in it: the records themselves
 * never sit in memory. Matching on 48–60 bits of SHA-1 leaves a false-positive
 * chance per lookup of about entries / 2^(fanoutBits + 40), well under one in
 * a million even for the full Pwned Passwords corpus.
 *
 * Layout: 32-byte header (magic, fanout bits, record bytes, entry count),
 * then (2^fanoutBits + 1) little-endian u32 bucket starts, then the records.
 */
const MAGIC = 'GHBRIDX1';
const HEADER_BYTES = 32;
const RECORD_BYTES = 5;
const PARTITIONS = 256;
/** Aim for about this many records per bucket: one small read per lookup. */
const RECORDS_PER_BUCKET = 64;
const MIN_FANOUT_BITS = 8;
const MAX_FANOUT_BITS = 20;
const CHUNK_BYTES = 4 * 1024 * 1024;
const LITTLE_ENDIAN = endianness() === 'LE';

const readAsync = promisify(read);

export type CorpusFormat = 'sha1' | 'plain';

interface BuildProgress {
  phase: 'reading' | 'writing';
  done: number;
  total: number;
}

export interface BuildOptions {
  /** `sha1`: Pwned Passwords download lines `SHA1[:COUNT]`; `plain`: one password per line. Default: detected from the first line. */
  format?: CorpusFormat | 'auto';
  onProgress?: (progress: BuildProgress) => void;
}

export interface BuildResult {
  format: CorpusFormat;
  /** Non-empty input lines. */
  lines: number;
  /** Lines that were not `SHA1[:COUNT]` in sha1 format, or had count 0 (padding). */
  skipped: number;
  /** Distinct records in the index. */
  entries: number;
  bytes: number;
}

const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) {
  HEX[65 + i] = 10 + i;
  HEX[97 + i] = 10 + i;
}

/** A 40-hex-digit SHA-1, optionally followed by `:COUNT`; count 0 is padding. */
function sha1LineKind(buf: Buffer, start: number, end: number): 'hash' | 'padding' | 'invalid' {
  if (end - start < 40) return 'invalid';
  for (let i = start; i < start + 40; i++) if (HEX[buf[i] as number] === -1) return 'invalid';
  if (end === start + 40) return 'hash';
  if (buf[start + 40] !== 58 || end === start + 41) return 'invalid';
  let zero = true;
  for (let i = start + 41; i < end; i++) {
    const c = buf[i] as number;
    if (c < 48 || c > 57) return 'invalid';
    if (c !== 48) zero = false;
  }
  return zero ? 'padding' : 'hash';
}

function hexWord(buf: Buffer, at: number): number {
  let value = 0;
  for (let i = at; i < at + 8; i++) value = value * 16 + (HEX[buf[i] as number] as number);
  return value;
}

const SHA1_LINE = /^[0-9A-Fa-f]{40}(:\d+)?\r?$/;

function detectFormat(path: string): CorpusFormat {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(4096);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const first = buf
      .subarray(0, n)
      .toString('latin1')
      .split('\n')
      .find((line) => line.trim() !== '');
    return first !== undefined && SHA1_LINE.test(first) ? 'sha1' : 'plain';
  } finally {
    closeSync(fd);
  }
}

/** Collects 64-bit keys into one temporary file per top byte, so that each can be sorted alone. */
class Partitions {
  readonly #dir: string;
  readonly #fds: number[] = [];
  readonly #buffers: Uint32Array[] = [];
  readonly #fill = new Uint32Array(PARTITIONS);
  readonly counts = new Float64Array(PARTITIONS);
  static readonly BUFFER_KEYS = 8192;

  constructor(dir: string) {
    this.#dir = dir;
    for (let p = 0; p < PARTITIONS; p++) {
      this.#fds.push(openSync(this.path(p), 'w', 0o600));
      this.#buffers.push(new Uint32Array(Partitions.BUFFER_KEYS * 2));
    }
  }

  path(p: number): string {
    return join(this.#dir, `part-${p}`);
  }

  /** Stored in the memory layout of a BigUint64Array, so a partition sorts natively. */
  add(hi: number, lo: number): void {
    const p = hi >>> 24;
    const buffer = this.#buffers[p] as Uint32Array;
    const at = (this.#fill[p] as number) * 2;
    buffer[at] = LITTLE_ENDIAN ? lo : hi;
    buffer[at + 1] = LITTLE_ENDIAN ? hi : lo;
    this.counts[p] = (this.counts[p] as number) + 1;
    this.#fill[p] = at / 2 + 1;
    if (at / 2 + 1 === Partitions.BUFFER_KEYS) this.#flush(p);
  }

  #flush(p: number): void {
    const keys = this.#fill[p] as number;
    if (keys === 0) return;
    const buffer = this.#buffers[p] as Uint32Array;
    writeSync(this.#fds[p] as number, new Uint8Array(buffer.buffer, 0, keys * 8));
    this.#fill[p] = 0;
  }

  finish(): void {
    for (let p = 0; p < PARTITIONS; p++) {
      this.#flush(p);
      closeSync(this.#fds[p] as number);
    }
  }
}

function chooseFanoutBits(keys: number): number {
  const bits = Math.ceil(Math.log2(Math.max(1, keys / RECORDS_PER_BUCKET)));
  return Math.min(MAX_FANOUT_BITS, Math.max(MIN_FANOUT_BITS, bits));
}

/**
 * Builds the index from a Pwned Passwords download (`SHA1:COUNT` lines,
 * sorted or not) or a list of plain passwords. Memory stays bounded by the
 * largest of 256 partitions (8 bytes per key), so a corpus of a billion
 * hashes needs about 30 MB rather than 8 GB. Writes to a temporary file and
 * renames it into place, so a reader never sees half an index.
 */
export function buildBreachIndex(inputPath: string, outputPath: string, options: BuildOptions = {}): BuildResult {
  const format = !options.format || options.format === 'auto' ? detectFormat(inputPath) : options.format;
  const total = statSync(inputPath).size;
  const workDir = mkdtempSync(join(dirname(outputPath), '.breach-import-'));
  const partialPath = join(workDir, 'index');
  try {
    const partitions = new Partitions(workDir);
    const { lines, skipped } = readCorpus(inputPath, format, partitions, (done) =>
      options.onProgress?.({ phase: 'reading', done, total }),
    );
    partitions.finish();
    const keys = partitions.counts.reduce((a, b) => a + b, 0);
    const entries = writeIndex(partitions, keys, partialPath, (done) =>
      options.onProgress?.({ phase: 'writing', done, total: PARTITIONS }),
    );
    renameSync(partialPath, outputPath);
    return { format, lines, skipped, entries, bytes: statSync(outputPath).size };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

function readCorpus(
  inputPath: string,
  format: CorpusFormat,
  partitions: Partitions,
  progress: (bytesRead: number) => void,
): { lines: number; skipped: number } {
  const fd = openSync(inputPath, 'r');
  let lines = 0;
  let skipped = 0;
  const handleLine = (buf: Buffer, start: number, end: number) => {
    if (end > start && buf[end - 1] === 13) end--;
    if (end === start) return;
    lines++;
    if (format === 'plain') {
      const digest = createHash('sha1').update(buf.subarray(start, end)).digest();
      partitions.add(digest.readUInt32BE(0), digest.readUInt32BE(4));
      return;
    }
    const kind = sha1LineKind(buf, start, end);
    if (kind === 'hash') partitions.add(hexWord(buf, start), hexWord(buf, start + 8));
    else skipped++;
  };
  try {
    let buf = Buffer.alloc(CHUNK_BYTES);
    let carry = 0;
    let position = 0;
    for (;;) {
      const n = readSync(fd, buf, carry, buf.length - carry, position);
      position += n;
      const end = carry + n;
      let start = 0;
      for (let nl = buf.indexOf(10, start); nl !== -1 && nl < end; nl = buf.indexOf(10, start)) {
        handleLine(buf, start, nl);
        start = nl + 1;
      }
      if (n === 0) {
        if (end > start) handleLine(buf, start, end);
        break;
      }
      carry = end - start;
      if (carry === buf.length) {
        // A single line longer than the buffer: grow rather than split it.
        const bigger = Buffer.alloc(buf.length * 2);
        buf.copy(bigger, 0, 0, carry);
        buf = bigger;
      } else {
        buf.copy(buf, 0, start, end);
      }
      progress(position);
    }
    progress(position);
  } finally {
    closeSync(fd);
  }
  return { lines, skipped };
}

function writeIndex(partitions: Partitions, keys: number, path: string, progress: (done: number) => void): number {
  const fanoutBits = chooseFanoutBits(keys);
  const buckets = 2 ** fanoutBits;
  const counts = new Uint32Array(buckets);
  const recordsOffset = HEADER_BYTES + (buckets + 1) * 4;
  const fd = openSync(path, 'w', 0o600);
  try {
    let entries = 0;
    let position = recordsOffset;
    const out = Buffer.alloc(RECORD_BYTES * 65536);
    let used = 0;
    const flush = () => {
      writeSync(fd, out, 0, used, position);
      position += used;
      used = 0;
    };
    let prevBucket = -1;
    let prevHi = -1;
    let prevLo = -1;
    for (let p = 0; p < PARTITIONS; p++) {
      const n = partitions.counts[p] as number;
      const sorted = new BigUint64Array(n);
      if (n > 0) {
        const pfd = openSync(partitions.path(p), 'r');
        readSync(pfd, new Uint8Array(sorted.buffer), 0, n * 8, 0);
        closeSync(pfd);
        sorted.sort();
      }
      rmSync(partitions.path(p), { force: true });
      const words = new Uint32Array(sorted.buffer);
      for (let i = 0; i < n; i++) {
        const hi = words[LITTLE_ENDIAN ? 2 * i + 1 : 2 * i] as number;
        const lo = words[LITTLE_ENDIAN ? 2 * i : 2 * i + 1] as number;
        const bucket = hi >>> (32 - fanoutBits);
        // The 40 bits after the fan-out prefix, as two words shifted left.
        const restHi = ((hi << fanoutBits) | (lo >>> (32 - fanoutBits))) >>> 0;
        const restLo = (lo << fanoutBits) >>> 0;
        const lastByte = restLo >>> 24;
        if (bucket === prevBucket && restHi === prevHi && lastByte === prevLo) continue;
        prevBucket = bucket;
        prevHi = restHi;
        prevLo = lastByte;
        out.writeUInt32BE(restHi, used);
        out[used + 4] = lastByte;
        used += RECORD_BYTES;
        if (used === out.length) flush();
        counts[bucket] = (counts[bucket] as number) + 1;
        entries++;
      }
      progress(p + 1);
    }
    flush();
    if (entries > 0xffffffff) throw new RangeError('more than 2^32 distinct hashes do not fit one index');

    const head = Buffer.alloc(recordsOffset);
    head.write(MAGIC, 0, 'latin1');
    head[8] = fanoutBits;
    head[9] = RECORD_BYTES;
    head.writeBigUInt64LE(BigInt(entries), 16);
    let start = 0;
    for (let b = 0; b < buckets; b++) {
      head.writeUInt32LE(start, HEADER_BYTES + b * 4);
      start += counts[b] as number;
    }
    head.writeUInt32LE(start, HEADER_BYTES + buckets * 4);
    writeSync(fd, head, 0, head.length, 0);
    return entries;
  } finally {
    closeSync(fd);
  }
}

/** Reads an index built by `buildBreachIndex`: the bucket table in memory, records by pread. */
export class BreachIndex {
  readonly path: string;
  readonly entries: number;
  readonly bytes: number;
  readonly fanoutBits: number;
  readonly #fd: number;
  readonly #starts: Uint32Array;
  readonly #recordsOffset: number;
  #closed = false;

  private constructor(path: string, fd: number, fanoutBits: number, entries: number, starts: Uint32Array) {
    this.path = path;
    this.#fd = fd;
    this.fanoutBits = fanoutBits;
    this.entries = entries;
    this.#starts = starts;
    this.#recordsOffset = HEADER_BYTES + starts.length * 4;
    this.bytes = fstatSync(fd).size;
  }

  /** Opens and checks the file; throws an Error that says how to build one when it is not an index. */
  static open(path: string): BreachIndex {
    const fd = openSync(path, 'r');
    try {
      const header = Buffer.alloc(HEADER_BYTES);
      const n = readSync(fd, header, 0, HEADER_BYTES, 0);
      const fanoutBits = header[8] as number;
      if (
        n !== HEADER_BYTES ||
        header.toString('latin1', 0, 8) !== MAGIC ||
        fanoutBits < MIN_FANOUT_BITS ||
        fanoutBits > MAX_FANOUT_BITS ||
        header[9] !== RECORD_BYTES
      ) {
        throw new Error(`${path} is not a Gatehouse breach index; build one with: gatehouse breach import FILE`);
      }
      const entries = Number(header.readBigUInt64LE(16));
      const buckets = 2 ** fanoutBits;
      const table = Buffer.alloc((buckets + 1) * 4);
      readSync(fd, table, 0, table.length, HEADER_BYTES);
      const starts = new Uint32Array(buckets + 1);
      for (let b = 0; b <= buckets; b++) starts[b] = table.readUInt32LE(b * 4);
      const expected = HEADER_BYTES + table.length + entries * RECORD_BYTES;
      if (starts[buckets] !== entries || fstatSync(fd).size !== expected) {
        throw new Error(`${path} is truncated or damaged; build it again with: gatehouse breach import FILE`);
      }
      return new BreachIndex(path, fd, fanoutBits, entries, starts);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** Looks the password's SHA-1 (of its UTF-8 bytes, as Pwned Passwords does) up. */
  contains(password: string): Promise<boolean> {
    return this.containsSha1(createHash('sha1').update(password, 'utf8').digest());
  }

  async containsSha1(digest: Uint8Array): Promise<boolean> {
    if (this.#closed) throw new Error('breach index is closed');
    const view = Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength);
    const hi = view.readUInt32BE(0);
    const lo = view.readUInt32BE(4);
    const bits = this.fanoutBits;
    const bucket = hi >>> (32 - bits);
    const start = this.#starts[bucket] as number;
    const count = (this.#starts[bucket + 1] as number) - start;
    if (count === 0) return false;
    const target = (((hi << bits) | (lo >>> (32 - bits))) >>> 0) * 256 + (((lo << bits) >>> 0) >>> 24);
    const records = Buffer.allocUnsafe(count * RECORD_BYTES);
    const { bytesRead } = await readAsync(
      this.#fd,
      records,
      0,
      records.length,
      this.#recordsOffset + start * RECORD_BYTES,
    );
    if (bytesRead !== records.length) throw new Error(`${this.path} is truncated`);
    let low = 0;
    let high = count - 1;
    while (low <= high) {
      const mid = (low + high) >>> 1;
      const value = records.readUIntBE(mid * RECORD_BYTES, RECORD_BYTES);
      if (value === target) return true;
      if (value < target) low = mid + 1;
      else high = mid - 1;
    }
    return false;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }
}
