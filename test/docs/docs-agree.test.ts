/**
 * The documentation agrees with the repository. For every Markdown file:
 * links resolve (file and heading), every repository path written in code
 * exists, every `*.md` named in prose exists, and every environment variable
 * it names is one that Gatehouse (src/config.ts), .env.example or the test and
 * benchmark tooling reads. .env.example lists exactly the variables that
 * src/config.ts and compose.yaml read, and the deployment files do what the
 * docs say they do.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { posix, resolve } from 'node:path';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { loadConfig } from '../../src/config.ts';
import { PROBLEMS, type ProblemCode, problemType } from '../../src/domain/errors.ts';
import { problemPages } from '../../src/http/problem-pages.ts';
import { escapeHtml } from '../../src/views/escape.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const read = (path: string) => readFileSync(resolve(ROOT, path), 'utf8');

// ---------------------------------------------------------------------------
// The repository as Git sees it: .gitignore'd paths (node_modules, data,
// .env…) are not repository files, so a doc naming one is not checked.

function globToRegExp(glob: string): string {
  return glob
    .split(/(\*\*\/?|\*|\?)/)
    .map((part) => {
      if (part === '**/' || part === '**') return '(?:.*/)?';
      if (part === '*') return '[^/]*';
      if (part === '?') return '[^/]';
      return part.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    })
    .join('');
}

const IGNORED: RegExp[] = read('.gitignore')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#') && !line.startsWith('!'))
  .map((line) => {
    const pattern = line.replace(/\/$/, '');
    const anchored = pattern.includes('/');
    return new RegExp(`${anchored ? '^' : '(?:^|/)'}${globToRegExp(pattern.replace(/^\//, ''))}$`);
  });

/** True when the path, or a folder it is in, is ignored by Git. */
function isIgnored(path: string): boolean {
  const segments = path.replace(/\/$/, '').split('/');
  return segments.some((_, i) => {
    const prefix = segments.slice(0, i + 1).join('/');
    return IGNORED.some((pattern) => pattern.test(prefix));
  });
}

const FILES = new Set<string>();
const DIRS = new Set<string>(['']);
(function walk(dir: string) {
  for (const entry of readdirSync(resolve(ROOT, dir), { withFileTypes: true })) {
    const path = dir === '' ? entry.name : `${dir}/${entry.name}`;
    if (entry.name === '.git' || isIgnored(path)) continue;
    if (entry.isDirectory()) {
      DIRS.add(path);
      walk(path);
    } else if (entry.isFile()) FILES.add(path);
  }
})('');

const TOP_LEVEL = new Set([...FILES, ...DIRS].filter((p) => p !== '' && !p.includes('/')));

/** A repository-relative path (a trailing slash means a folder; `*` globs must match something). */
function exists(path: string): boolean {
  if (path.includes('*')) {
    const pattern = new RegExp(`^${globToRegExp(path.replace(/\/$/, ''))}$`);
    return [...FILES, ...DIRS].some((p) => pattern.test(p));
  }
  if (path.endsWith('/')) return DIRS.has(path.slice(0, -1));
  return FILES.has(path) || DIRS.has(path);
}

/** `a/{b,c}-d.ts` → `a/b-d.ts`, `a/c-d.ts`. */
function expandBraces(path: string): string[] {
  const m = /\{([^{}]*,[^{}]*)\}/.exec(path);
  if (!m) return [path];
  return m[1]!.split(',').flatMap((alt) => expandBraces(path.replace(m[0], alt)));
}

// ---------------------------------------------------------------------------
// Markdown, read just enough: fenced blocks, code spans, links, headings.

interface Fence {
  lang: string;
  body: string;
  line: number;
}

interface Markdown {
  path: string;
  /** The text with fenced blocks blanked (line numbers kept). */
  prose: string;
  /** `prose` with code spans blanked too (offsets kept). */
  plain: string;
  fences: Fence[];
  spans: { text: string; index: number }[];
  anchors: Set<string>;
}

/** GitHub's heading anchor: lower case, punctuation dropped, each space a hyphen; repeats get -1, -2… */
function slug(heading: string, seen: Map<string, number>): string {
  const base = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
  const count = seen.get(base) ?? 0;
  seen.set(base, count + 1);
  return count === 0 ? base : `${base}-${count}`;
}

const blank = (text: string) => text.replace(/[^\n]/g, ' ');
// Inline code: matching runs of backticks, never across a blank line.
const CODE_SPAN = /(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n)[\s\S])*?[^`])\1(?!`)/g;

function parseMarkdown(path: string): Markdown {
  const fences: Fence[] = [];
  const proseLines: string[] = [];
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let open: { marker: string; fence: Fence; lines: string[] } | undefined;
  read(path)
    .split('\n')
    .forEach((line, i) => {
      const marker = /^ {0,3}(`{3,}|~{3,})\s*([\w+-]*)/.exec(line);
      if (open) {
        if (marker && marker[1]!.startsWith(open.marker) && marker[2] === '') {
          open.fence.body = open.lines.join('\n');
          fences.push(open.fence);
          open = undefined;
        } else open.lines.push(line);
        proseLines.push('');
      } else if (marker) {
        open = { marker: marker[1]!, fence: { lang: marker[2]!.toLowerCase(), body: '', line: i + 2 }, lines: [] };
        proseLines.push('');
      } else {
        const heading = /^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$/.exec(line);
        if (heading) anchors.add(slug(heading[1]!, seen));
        proseLines.push(line);
      }
    });
  const prose = proseLines.join('\n');
  const spans: { text: string; index: number }[] = [];
  const plain = prose.replace(CODE_SPAN, (whole, _ticks: string, text: string, index: number) => {
    spans.push({ text: text.replace(/\s+/g, ' ').trim(), index });
    return blank(whole);
  });
  return { path, prose, plain, fences, spans, anchors };
}

const lineAt = (text: string, index: number) => text.slice(0, index).split('\n').length;

const DOCS = [...FILES]
  .filter((p) => p.endsWith('.md'))
  .sort()
  .map(parseMarkdown);
const DOC_BY_PATH = new Map(DOCS.map((d) => [d.path, d]));

// ---------------------------------------------------------------------------
// Environment variables.

const PROBLEM_CODES = new Set(Object.keys(PROBLEMS));

/** What src/config.ts reads: every name loadConfig asks for, plus every literal `read.x('NAME'…)`. */
const CONFIG_VARS = (() => {
  const names = new Set<string>();
  const env = new Proxy({} as Record<string, string | undefined>, {
    get(_, key) {
      if (typeof key === 'string' && /^[A-Z][A-Z0-9_]*$/.test(key)) names.add(key);
      // A 32-byte SECRET_KEY keeps loadConfig from generating one into DATA_DIR.
      if (key === 'SECRET_KEY') return 'k'.repeat(32);
      // The three presets and `acme`, the generic issuer the docs use: their SSO_<NAME>_* variables are read.
      if (key === 'SSO_PROVIDERS') return 'google,microsoft,github,acme';
      if (typeof key === 'string' && /^SSO_[A-Z0-9]+_(CLIENT_ID|CLIENT_SECRET|TENANT)$/.test(key)) return 'x';
      if (key === 'SSO_ACME_ISSUER') return 'https://id.acme.example';
      return undefined;
    },
  });
  loadConfig(env);
  for (const m of read('src/config.ts').matchAll(/\bread\.\w+\(\s*'([A-Z][A-Z0-9_]*)'/g)) names.add(m[1]!);
  return names;
})();

const EXAMPLE_VARS = new Set([...read('.env.example').matchAll(/^#?[ \t]*([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!));

const COMPOSE_VARS = new Set([...read('compose.yaml').matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((m) => m[1]!));

/** Variables the tests, benchmarks, CLI and examples read for themselves (`FUZZ_SEED`, `BENCH_SECONDS`…). */
const TOOLING_VARS = new Set(
  [...FILES]
    .filter((p) => /^(src|test|bench|bin|examples)\/.*\.(ts|mjs|cjs|js)$/.test(p))
    .flatMap((p) => [...read(p).matchAll(/\benv(?:\.([A-Z][A-Z0-9_]*)\b|\[\s*['"]([A-Z][A-Z0-9_]*)['"]\s*\])/g)])
    .map((m) => (m[1] ?? m[2])!),
);

const KNOWN_VARS = new Set([...CONFIG_VARS, ...EXAMPLE_VARS, ...TOOLING_VARS]);

interface Mention {
  where: string;
  name: string;
  /** `RATE_LIMIT_*`: some variable starts with `name`. */
  wildcard: boolean;
}

const VAR_TOKEN = /(?<![A-Za-z0-9_])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)(_\*)?(?![a-z0-9_])/g;
const ASSIGNMENT = /(?<![\w$-])([A-Z][A-Z0-9_]*)=/g;

/** Every environment variable a document names: see the rules in the test below. */
function variableMentions(doc: Markdown): Mention[] {
  const mentions: Mention[] = [];
  const at = (line: number) => `${doc.path}:${line}`;
  for (const span of doc.spans) {
    const where = at(lineAt(doc.prose, span.index));
    for (const m of span.text.matchAll(VAR_TOKEN)) {
      const [, name, star] = m as unknown as [string, string, string | undefined];
      if (star) mentions.push({ where, name: `${name}_`, wildcard: true });
      else if (name.includes('_') && !PROBLEM_CODES.has(name)) mentions.push({ where, name, wildcard: false });
    }
    for (const m of span.text.matchAll(ASSIGNMENT)) mentions.push({ where, name: m[1]!, wildcard: false });
  }
  // First column of a table headed `variable`: single words too (`PORT`, `PAGES`).
  const lines = doc.plain.split('\n');
  const proseLines = doc.prose.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*\|\s*variable\s*\|/i.test(lines[i]!)) continue;
    for (let j = i + 2; j < lines.length && /^\s*\|/.test(lines[j]!); j++) {
      const cell = proseLines[j]!.split('|')[1] ?? '';
      for (const m of cell.matchAll(/`([^`]+)`/g)) {
        for (const part of m[1]!.split(',')) {
          const name = /^\s*([A-Z][A-Z0-9_]*?)(_\*)?\s*$/.exec(part);
          if (name) mentions.push({ where: at(j + 1), name: name[2] ? `${name[1]}_` : name[1]!, wildcard: !!name[2] });
        }
      }
    }
  }
  // `NAME=value` in shell examples, unless an example of the same document uses it as a shell variable ($TOKEN).
  const shellText = doc.fences.map((fence) => fence.body).join('\n');
  for (const fence of doc.fences) {
    if (!['', 'sh', 'bash', 'shell', 'console', 'env', 'dotenv'].includes(fence.lang)) continue;
    fence.body.split('\n').forEach((line, k) => {
      for (const m of line.matchAll(ASSIGNMENT)) {
        const name = m[1]!;
        if (new RegExp(`\\$\\{?${name}\\b`).test(shellText)) continue;
        mentions.push({ where: at(fence.line + k), name, wildcard: false });
      }
    });
  }
  const seen = new Set<string>();
  return mentions.filter((m) => {
    const key = `${m.where} ${m.name} ${m.wildcard}`;
    return !seen.has(key) && seen.add(key);
  });
}

// ---------------------------------------------------------------------------
// Repository paths written in code.

const FILE_EXTENSION = /\.(ts|mjs|cjs|js|json|ya?ml|md|eta|css|conf|txt|png|sql|sh)$/;

/**
 * The repository paths a code span or shell example names, each with the
 * places it may be relative to:
 * - `src/…`, `test/…`, `deploy/…`, `.env.example`, `compose.yaml` (anything
 *   under a top-level entry): from the root;
 * - in inline code, `http/login.ts` (a layer of src/, as docs/architecture.md
 *   writes them): from the root, the document's folder or src/;
 * - a template name (`layout.eta`): src/views/.
 * URLs, routes, absolute paths, placeholders (`<id>`, `…`, `$VAR`,
 * `DATA_DIR/…`) and ignored paths (`./data`, `.env`) are no repository paths.
 */
function pathCandidates(text: string, docDir: string, inFence: boolean): { path: string; bases: string[] }[] {
  const found: { path: string; bases: string[] }[] = [];
  for (const raw of text.split(/\s+/)) {
    const token = raw.replace(/^[("'[]+/, '').replace(/[)"',;:\]]+$|\.$/g, '');
    if (token === '' || /:\/\/|^[/~@-]|[<>…$=?#%]|^\.\.?$/.test(token)) continue;
    const path = token.replace(/^\.\//, '');
    const first = path.split('/')[0]!;
    if (/^[A-Z][A-Z0-9_]*$/.test(first) && path.includes('/')) continue;
    if (/\{[^,}]*\}/.test(path)) continue;
    let bases: string[] | undefined;
    if (TOP_LEVEL.has(first) && (path.includes('/') || first.includes('.'))) bases = [''];
    else if (!inFence && !TOP_LEVEL.has(first) && path.includes('/') && FILE_EXTENSION.test(path))
      bases = ['', docDir, 'src'];
    else if (!inFence && !path.includes('/') && /^\.env(\.[\w-]+)+$|^(compose|docker-compose)\.ya?ml$/.test(path))
      bases = [''];
    else if (!inFence && /^[\w.-]+\.eta$/.test(path)) bases = ['src/views'];
    if (!bases || isIgnored(path)) continue;
    for (const expanded of expandBraces(path)) found.push({ path: expanded, bases });
  }
  return found;
}

const resolvesIn = (path: string, bases: string[]) =>
  bases.some((base) => exists(posix.normalize(base === '' ? path : `${base}/${path}`)));

// ---------------------------------------------------------------------------

describe('the docs agree with the repository', () => {
  test('the Markdown files are found', () => {
    for (const path of ['README.md', 'docs/auth.md', 'docs/operations.md']) assert.ok(DOC_BY_PATH.has(path), path);
  });

  test('every relative link leads to a file, and every #anchor to a heading', () => {
    const problems: string[] = [];
    for (const doc of DOCS) {
      const links = [
        ...doc.plain.matchAll(/!?\[(?:[^[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+["'(][^)]*)?\)/g),
        ...doc.plain.matchAll(/^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm),
      ];
      for (const m of links) {
        const target = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:|^\/\//i.test(target)) continue;
        const where = `${doc.path}:${lineAt(doc.prose, m.index)}`;
        const [rawPath = '', anchor] = target.split('#');
        const pathPart = decodeURIComponent(rawPath);
        const path =
          pathPart === ''
            ? doc.path
            : posix.normalize(
                pathPart.startsWith('/') ? pathPart.slice(1) : posix.join(posix.dirname(doc.path), pathPart),
              );
        if (path.startsWith('..') || !exists(path)) {
          problems.push(`${where}: link to ${target}: no such file`);
          continue;
        }
        const linked = DOC_BY_PATH.get(path);
        if (anchor && linked && !linked.anchors.has(decodeURIComponent(anchor).toLowerCase()))
          problems.push(`${where}: link to ${target}: no heading #${anchor} in ${path}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('every Markdown file named in prose exists', () => {
    const problems: string[] = [];
    for (const doc of DOCS) {
      const text = doc.plain
        .replace(/!?\[(?:[^[\]]|\[[^\]]*\])*\]\([^)]*\)/g, blank)
        .replace(/<[a-z]+:[^>\s]*>|\b[a-z]+:\/\/\S+/gi, blank);
      for (const m of text.matchAll(/(?<![\w./-])((?:\.{1,2}\/)?(?:[\w.-]+\/)*[\w-][\w.-]*\.md)(?![\w/-])/g)) {
        if (!resolvesIn(m[1]!, ['', posix.dirname(doc.path)]))
          problems.push(`${doc.path}:${lineAt(doc.prose, m.index)}: ${m[1]} does not exist`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('every repository path written in code exists', () => {
    const problems: string[] = [];
    for (const doc of DOCS) {
      const docDir = posix.dirname(doc.path);
      for (const span of doc.spans) {
        for (const { path, bases } of pathCandidates(span.text, docDir, false)) {
          if (!resolvesIn(path, bases)) problems.push(`${doc.path}:${lineAt(doc.prose, span.index)}: \`${path}\``);
        }
      }
      for (const fence of doc.fences) {
        if (!['', 'sh', 'bash', 'shell', 'console'].includes(fence.lang)) continue;
        fence.body.split('\n').forEach((line, k) => {
          for (const { path, bases } of pathCandidates(line.replace(/#.*$/, ''), docDir, true)) {
            if (!resolvesIn(path, bases)) problems.push(`${doc.path}:${fence.line + k}: ${path}`);
          }
        });
      }
    }
    assert.deepEqual(problems, []);
  });

  test('every environment variable the docs name is read by Gatehouse, listed in .env.example, or read by the tooling', () => {
    // A variable is: an UPPER_SNAKE name in inline code that is no problem code
    // of src/domain/errors.ts (so `EMAIL_TAKEN` is not one), a `NAME=value` in
    // inline code or in a shell example, or a name in the first column of a
    // table headed `variable`. `PREFIX_*` stands for the variables it starts.
    const problems: string[] = [];
    for (const doc of DOCS) {
      for (const { where, name, wildcard } of variableMentions(doc)) {
        const known = wildcard ? [...KNOWN_VARS].some((v) => v.startsWith(name)) : KNOWN_VARS.has(name);
        if (!known) problems.push(`${where}: ${wildcard ? `${name}*` : name}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  test('.env.example lists every variable src/config.ts and compose.yaml read, and nothing else', () => {
    assert.ok(CONFIG_VARS.has('DATABASE_URL') && CONFIG_VARS.has('PAGES_USER_DEFAULTS'), 'config variables found');
    const missing = [...new Set([...CONFIG_VARS, ...COMPOSE_VARS])].filter((v) => !EXAMPLE_VARS.has(v));
    const stale = [...EXAMPLE_VARS].filter((v) => !CONFIG_VARS.has(v) && !COMPOSE_VARS.has(v));
    assert.deepEqual(
      {
        'read by src/config.ts or compose.yaml, missing from .env.example': missing,
        'in .env.example, read by neither': stale,
      },
      {
        'read by src/config.ts or compose.yaml, missing from .env.example': [],
        'in .env.example, read by neither': [],
      },
    );
  });
});

describe('the deployment files do what the docs say', () => {
  const compose = read('compose.yaml');

  test('every image is pinned to a version tag', () => {
    const images = [...compose.matchAll(/^\s*image:\s*(\S+)/gm)].map((m) => m[1]!);
    assert.ok(images.length >= 5, images.join(', '));
    for (const image of images) {
      if (image === 'gatehouse:local') continue; // built from this repository
      // name:tag with a version in the tag, or a digest (name[:tag]@sha256:…).
      const [, tag, digest] = /^[^:@]+(?:\/[^:@]+)*(?::([^:/@]+))?(@sha256:[0-9a-f]{64})?$/.exec(image) ?? [];
      assert.ok(digest || (tag && /\d/.test(tag)), `${image}: pin a version (docs/operations.md)`);
    }
    const nodeImage = /^ARG NODE_IMAGE=(\S+)$/m.exec(read('Dockerfile'))?.[1];
    assert.match(nodeImage ?? '', /^node:24[\w.-]*$/, 'Dockerfile: Node 24, as the docs say');
  });

  test('Redis never evicts keys (docs/auth.md: an evicted revocation would readmit a revoked token)', () => {
    assert.match(read('docs/auth.md'), /maxmemory-policy noeviction/);
    const policy = /"--maxmemory-policy",\s*"([^"]+)"/.exec(compose)?.[1];
    assert.equal(policy, 'noeviction');
  });

  test('every nginx example passes X-Forwarded-For the way deploy/nginx.conf does', () => {
    const directive = /proxy_set_header\s+X-Forwarded-For\s+(\$\w+);/g;
    const deployed = [...read('deploy/nginx.conf').matchAll(directive)].map((m) => m[1]);
    assert.deepEqual(deployed, ['$proxy_add_x_forwarded_for']);
    for (const doc of DOCS) {
      const text = read(doc.path).replace(/\n\s*/g, ' ').replace(/`/g, '');
      for (const m of text.matchAll(directive)) assert.equal(m[1], deployed[0], `${doc.path}: ${m[0]}`);
    }
  });
});

describe('problem pages', () => {
  test('render the catalogue text as HTML: escaped, with `code` spans in <code>, no stray backticks', async () => {
    const app = Fastify();
    await app.register(problemPages);
    try {
      for (const code of Object.keys(PROBLEMS) as ProblemCode[]) {
        const res = await app.inject(problemType(code));
        assert.equal(res.statusCode, 200, code);
        assert.doesNotMatch(res.body, /`/, `${code}: literal backtick`);
        for (const [, span] of PROBLEMS[code].fix.matchAll(/`([^`]+)`/g))
          assert.ok(res.body.includes(`<code>${escapeHtml(span)}</code>`), `${code}: \`${span}\` in <code>`);
      }
      const unauthorized = await app.inject(problemType('UNAUTHORIZED'));
      assert.match(unauthorized.body, /<p>Send <code>Authorization: Bearer &lt;access token&gt;<\/code>\.<\/p>/);
      const validation = await app.inject(problemType('VALIDATION_ERROR'));
      assert.match(validation.body, /Correct each field listed in <code>errors<\/code> and send/);
    } finally {
      await app.close();
    }
  });
});
