// Import boundaries between the layers of src/ (run by `npm run lint`).
//
// A layer is a top-level folder of src/ (domain, flows, infra, db, http, cli,
// views) or a top-level file (config.ts, plugin.ts, app.ts, main.ts, cli.ts).
// Type-only imports count: tsPreCompilationDeps is on.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'domain-is-pure',
      comment:
        'src/domain holds pure rules: it imports only other src/domain modules (no Node built-ins, no npm packages, no other layer).',
      severity: 'error',
      from: { path: '^src/domain/' },
      to: { pathNot: '^src/domain/' },
    },
    {
      name: 'flows-not-to-http',
      comment: 'A flow is independent of HTTP: src/flows must not import src/http.',
      severity: 'error',
      from: { path: '^src/flows/' },
      to: { path: '^src/http/' },
    },
    {
      name: 'infra-db-not-to-flows-http',
      comment: 'Machinery (src/infra) and the database (src/db) must not import the flows or the HTTP layer.',
      severity: 'error',
      from: { path: '^src/(infra|db)/' },
      to: { path: '^src/(flows|http)/' },
    },
    {
      name: 'config-only-to-domain',
      comment: 'src/config.ts may import src/domain only (Node built-ins allowed), never http, flows, infra, db, ...',
      severity: 'error',
      from: { path: '^src/config\\.ts$' },
      to: { path: '^src/', pathNot: '^src/domain/' },
    },
    {
      name: 'plugin-only-from-entries',
      comment:
        'src/plugin.ts wires everything; only the entries (src/main.ts, src/app.ts, src/cli.ts, src/cli/**) may import it.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/(main|app|cli)\\.ts$', '^src/cli/'] },
      to: { path: '^src/plugin\\.ts$' },
    },
    {
      name: 'http-not-to-db',
      comment: 'Route files (src/http/**) must not import src/db, not even for types: go through a flow or infra.',
      severity: 'error',
      from: { path: '^src/http/' },
      to: { path: '^src/db/' },
    },
    {
      name: 'no-cycle-across-layers',
      comment: 'A cycle that leaves the layer it starts in ties two layers together.',
      severity: 'error',
      from: { path: '^src/([^/]+)' },
      to: { circular: true, via: { pathNot: '^src/$1(/|$)' } },
    },
    {
      name: 'no-cycle-within-layer',
      comment: 'A cycle among the modules of one folder.',
      severity: 'warn',
      from: { path: '^src/([^/]+)/' },
      to: { circular: true, viaOnly: { path: '^src/$1/' } },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'Every import must resolve, or the rules above could not see where it goes.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
      extensions: ['.ts', '.mts', '.js', '.mjs', '.cjs', '.json', '.d.ts'],
    },
    skipAnalysisNotInRules: true,
  },
};
