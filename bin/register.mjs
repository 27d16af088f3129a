// Lets Node 24 run Gatehouse's TypeScript sources from inside node_modules,
// where its built-in type stripping refuses to work. The CLI bin uses it; a
// host application that imports 'gatehouse' starts with:
//   node --import gatehouse/register app.js
import { readFileSync } from 'node:fs';
import module from 'node:module';

// Without the one-line notice that the stripping API is experimental.
const emitWarning = process.emitWarning;
process.emitWarning = (warning, ...rest) =>
  String(warning).includes('stripTypeScriptTypes') ? undefined : emitWarning.call(process, warning, ...rest);

module.registerHooks({
  load(url, context, nextLoad) {
    if (url.startsWith('file:') && url.endsWith('.ts') && url.includes('/node_modules/')) {
      const source = module.stripTypeScriptTypes(readFileSync(new URL(url), 'utf8'), { mode: 'strip' });
      return { format: 'module', source, shortCircuit: true };
    }
    return nextLoad(url, context);
  },
});
