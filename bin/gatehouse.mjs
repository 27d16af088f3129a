#!/usr/bin/env node
// The npm bin. In a checkout it runs src/cli.ts on Node's own type stripping
// (Node >= 24), like `npm start`. Installed, the package holds no sources but
// the compiled dist/cli.js (Node >= 22): Node strips no types under node_modules.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli.ts', import.meta.url);
const checkout = existsSync(source) && !import.meta.url.includes('/node_modules/');
const entry = checkout ? source : new URL('../dist/cli.js', import.meta.url);
const floor = checkout ? 24 : 22;
const major = Number(process.versions.node.split('.')[0]);
if (major < floor) {
  process.stderr.write(
    `gatehouse needs Node.js ${floor} or newer (this is ${process.version}). Install Node 24 LTS, or run: npx -p node@24 gatehouse\n`,
  );
  process.exit(1);
}
if (!existsSync(entry)) {
  process.stderr.write('gatehouse: dist/cli.js is missing; build the package first: npm run build\n');
  process.exit(1);
}
await import(entry.href);
