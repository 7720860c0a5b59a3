/**
 * `npm run bench -- <scenario...> [--concurrency 32] [--duration 10] [--warmup 2]`
 * Runs each scenario against a real service process, and the bare grpc-js
 * baseline with the same client, concurrency and response bytes in the same
 * run; prints a table and writes JSON to bench/results.
 */
import { parseArgs } from 'node:util';
import { createBenchEnvironment } from './benchEnvironment.js';
import { report, type ScenarioReport } from './report.js';
import { createPatient, getPatient, type RunSettings } from './scenarios/patientScenarios.js';

const SCENARIOS = {
  'get-patient-hit': (environment, settings) => getPatient(environment, settings, 'hit'),
  'get-patient-miss': (environment, settings) => getPatient(environment, settings, 'miss'),
  'create-patient': createPatient,
} satisfies Record<string, (environment: Awaited<ReturnType<typeof createBenchEnvironment>>, settings: RunSettings) => Promise<ScenarioReport>>;

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    concurrency: { type: 'string', default: '32' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
  },
});

const names = positionals.length > 0 ? positionals : Object.keys(SCENARIOS);
const unknown = names.filter((name) => !(name in SCENARIOS));
if (unknown.length > 0) {
  console.error(`bench: unknown scenario ${unknown.join(', ')}; known: ${Object.keys(SCENARIOS).join(', ')}`);
  process.exit(64);
}
const settings: RunSettings = {
  concurrency: Number(values.concurrency),
  durationMs: Number(values.duration) * 1_000,
  warmupMs: Number(values.warmup) * 1_000,
};

const reports: ScenarioReport[] = [];
for (const name of names) {
  const environment = await createBenchEnvironment();
  try {
    process.stdout.write(`running ${name} (${settings.concurrency} in flight, ${values.duration}s)...\n`);
    reports.push(await SCENARIOS[name as keyof typeof SCENARIOS](environment, settings));
  } finally {
    await environment.close();
  }
}
report(reports);
