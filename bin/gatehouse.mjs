#!/usr/bin/env node
// The npm bin: runs src/cli.ts on Node's native TypeScript support (Node >= 24).
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `gatehouse needs Node.js 24 or newer (this is ${process.version}). Install Node 24 LTS, or run: npx -p node@24 gatehouse\n`,
  );
  process.exit(1);
}
// Installed, this package lives in node_modules, where Node does not strip types by itself.
await import('./register.mjs');
await import('../src/cli.ts');
