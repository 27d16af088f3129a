#!/usr/bin/env node
// The npm bin: runs src/cli.ts on Node's native TypeScript support (Node >= 24).
import { readFileSync } from 'node:fs';
import { registerHooks, stripTypeScriptTypes } from 'node:module';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `gatehouse needs Node.js 24 or newer (this is ${process.version}). Install Node 24 LTS, or run it with npx -p node@24.\n`,
  );
  process.exit(1);
}

// Node strips types natively everywhere except inside node_modules, which is
// where this package lives once installed: strip its .ts files here instead.
registerHooks({
  load(url, context, nextLoad) {
    if (url.startsWith('file:') && url.endsWith('.ts') && url.includes('/node_modules/')) {
      const source = stripTypeScriptTypes(readFileSync(new URL(url), 'utf8'), { mode: 'strip' });
      return { format: 'module', source, shortCircuit: true };
    }
    return nextLoad(url, context);
  },
});

await import('../src/cli.ts');
