/**
 * `npm run bench -- <scenario...> [--concurrency 32] [--load 0.5] [--duration 10] [--warmup 2]`
 * Runs each scenario against a real service process, with its baseline (a
 * bare grpc-js server, raw SQL or raw Redis) measured in the same run; prints
 * a table and writes JSON to bench/results. With no scenario, lists them.
 */
import { parseArgs } from 'node:util';
import { createBenchEnvironment } from './benchEnvironment.js';
import { buildServices } from './processes.js';
import { report, type ScenarioReport } from './report.js';
import type { RunSettings } from './scenario.js';
import { SCENARIOS } from './scenarios/index.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    concurrency: { type: 'string', default: '32' },
    load: { type: 'string', default: '0.5' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
  },
});

if (positionals.length === 0) {
  process.stdout.write(`scenarios: ${Object.keys(SCENARIOS).join(', ')}\n`);
  process.exit(0);
}
const unknown = positionals.filter((name) => !(name in SCENARIOS));
if (unknown.length > 0) {
  console.error(`bench: unknown scenario ${unknown.join(', ')}; known: ${Object.keys(SCENARIOS).join(', ')}`);
  process.exit(64);
}
const settings: RunSettings = {
  concurrency: Number(values.concurrency),
  openLoopLoad: Number(values.load),
  durationMs: Number(values.duration) * 1_000,
  warmupMs: Number(values.warmup) * 1_000,
};
if (Object.values(settings).some((value) => !Number.isFinite(value) || value < 0) || settings.concurrency < 1 || settings.openLoopLoad <= 0) {
  console.error('bench: --concurrency and --load must be positive numbers, --duration and --warmup numbers of seconds');
  process.exit(64);
}

buildServices();
const reports: ScenarioReport[] = [];
for (const name of positionals) {
  const environment = await createBenchEnvironment();
  try {
    process.stdout.write(`running ${name} (${settings.concurrency} in flight; where latency is a target, also an open loop at ${settings.openLoopLoad} of that throughput; ${values.duration}s each)...\n`);
    reports.push(...[await SCENARIOS[name]!(environment, settings)].flat());
  } finally {
    await environment.close();
  }
}
report(reports);
