// `npm run bench`: every scenario in bench/scenarios, each figure with its
// ratio to a baseline measured in this same run, printed and saved as JSON.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { type BenchResult, load, round, SECONDS, startServer } from './lib.ts';

export interface BenchContext {
  /** Fastify hello-world requests/s, measured first. */
  helloRps: number;
  /** Baselines scenarios share, e.g. bare hash rates. */
  baselines: Record<string, number>;
}

async function helloWorld(): Promise<number> {
  const server = await startServer('hello');
  try {
    const r = await load({ url: server.url, connections: 50 });
    return r.rps;
  } finally {
    await server.close();
  }
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const dir = new URL('./scenarios/', import.meta.url);
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .map((f) => f.slice(0, -3))
    .sort((a, b) => (a === 'registration' ? -1 : b === 'registration' ? 1 : a.localeCompare(b)))
    .filter((n) => only.length === 0 || only.includes(n));

  const helloRps = await helloWorld();
  const ctx: BenchContext = { helloRps, baselines: {} };
  const results: Record<string, BenchResult[]> = {
    baseline: [{ name: 'Fastify hello-world', value: round(helloRps, 0), unit: 'req/s' }],
  };
  for (const name of names) {
    const scenario = (await import(new URL(`${name}.ts`, dir).href)) as {
      default: (c: BenchContext) => Promise<BenchResult[]>;
    };
    process.stderr.write(`bench: ${name}…\n`);
    results[name] = await scenario.default(ctx);
  }

  const machine = {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: availableParallelism(),
    memory_gib: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    seconds_per_measurement: SECONDS,
  };
  const report = { date: new Date().toISOString(), machine, results };
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  const json = `${JSON.stringify(report, null, 2)}\n`;
  writeFileSync(new URL('./results/latest.json', import.meta.url), json);
  writeFileSync(new URL(`./results/${report.date.replaceAll(':', '-')}.json`, import.meta.url), json);

  const rows: string[] = [
    '| scenario | measure | value | ratio (baseline) | target | p50 / p99 ms |',
    '|---|---|---|---|---|---|',
  ];
  for (const [scenario, list] of Object.entries(results)) {
    for (const r of list) {
      const ratio = r.ratio === undefined ? '' : `${r.ratio} (${r.baseline})`;
      const target =
        r.target === undefined ? '' : `≥ ${r.target}${r.ratio !== undefined && r.ratio < r.target ? ' ✗' : ' ✓'}`;
      const latency = r.p50_ms === undefined ? '' : `${r.p50_ms} / ${r.p99_ms}`;
      rows.push(`| ${scenario} | ${r.name} | ${r.value} ${r.unit} | ${ratio} | ${target} | ${latency} |`);
    }
  }
  process.stdout.write(
    `Machine: ${machine.cores} cores (${machine.cpu}), ${machine.memory_gib} GiB, Node ${machine.node}\n\n`,
  );
  process.stdout.write(`${rows.join('\n')}\n`);
}

await main();
