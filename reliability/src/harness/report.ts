import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Status } from 'nice-grpc';
import type { DatabaseFindings } from './checks.js';
import type { MixedLoad, OperationKind } from './load.js';

const RESULTS_DIR = fileURLToPath(new URL('../../../bench/results/reliability/', import.meta.url));

/** What the callers saw: calls (attempts on the wire), failures by status, operations and their outcome. */
export interface CallSummary {
  readonly calls: number;
  readonly failuresByCode: Readonly<Record<string, number>>;
  readonly operations: Readonly<Record<string, { made: number; acknowledged: number; givenUp: number }>>;
}

export function summarizeCalls(load: MixedLoad, from = 0, to = Number.POSITIVE_INFINITY): CallSummary {
  const failuresByCode: Record<string, number> = {};
  const operations: Record<string, { made: number; acknowledged: number; givenUp: number }> = {};
  let calls = 0;
  for (const operation of load.operations) {
    const attempts = operation.attempts.filter((attempt) => attempt.startedAt >= from && attempt.startedAt < to);
    if (attempts.length === 0) {
      continue;
    }
    calls += attempts.length;
    for (const attempt of attempts) {
      if (attempt.code !== Status.OK) {
        const name = Status[attempt.code] ?? String(attempt.code);
        failuresByCode[name] = (failuresByCode[name] ?? 0) + 1;
      }
    }
    const entry = (operations[operation.kind as OperationKind] ??= { made: 0, acknowledged: 0, givenUp: 0 });
    entry.made += 1;
    if (operation.acknowledgedAt !== undefined) {
      entry.acknowledged += 1;
    } else if (operation.attempts.length > 0 && operation.attempts.at(-1)?.code !== Status.OK) {
      entry.givenUp += 1;
    }
  }
  return { calls, failuresByCode, operations };
}

/**
 * Milliseconds from `clearedAt` (the fault's end) until calls stopped
 * failing: the end of the last failed call, 0 when none failed after it.
 */
export function recoveryMs(load: MixedLoad, clearedAt: number): number {
  let last = clearedAt;
  for (const operation of load.operations) {
    for (const attempt of operation.attempts) {
      if (attempt.code !== Status.OK && attempt.endedAt > last) {
        last = attempt.endedAt;
      }
    }
  }
  return last - clearedAt;
}

/** Status names of the calls that failed while they started in [from, to). */
export function failureCodes(load: MixedLoad, from: number, to: number): string[] {
  return Object.keys(summarizeCalls(load, from, to).failuresByCode).sort();
}

export interface ScenarioReport {
  readonly scenario: string;
  readonly calls: CallSummary;
  readonly database: Omit<DatabaseFindings, 'violations'> & { readonly violations: number };
  /** Scenario-specific figures (time to recover, exit codes, memory...). */
  readonly figures: Readonly<Record<string, unknown>>;
}

/** Prints a scenario's figures and keeps them in bench/results/reliability/<scenario>.json. */
export function report(scenario: string, calls: CallSummary, database: DatabaseFindings, figures: Record<string, unknown> = {}): ScenarioReport {
  const result: ScenarioReport = { scenario, calls, database: { ...database, violations: database.violations.length }, figures };
  const lines = [
    `── ${scenario}`,
    `   calls ${calls.calls}; failed: ${Object.entries(calls.failuresByCode).map(([code, count]) => `${code} ${count}`).join(', ') || 'none'}`,
    `   operations: ${Object.entries(calls.operations)
      .map(([kind, { made, acknowledged, givenUp }]) => `${kind} ${acknowledged}/${made}${givenUp ? ` (${givenUp} given up)` : ''}`)
      .join(', ')}`,
    `   database: ${database.patients} patients, ${database.readings} readings, ${database.writeAuditEvents} write audit events, ` +
      `${database.accessEvents} access events (${database.lostAccessEvents} lost), trail ${database.auditTrail.intact ? 'intact' : 'BROKEN'} ` +
      `(${database.auditTrail.checked} events)`,
    ...Object.entries(figures).map(([name, value]) => `   ${name}: ${typeof value === 'object' ? JSON.stringify(value) : String(value)}`),
    ...database.violations.slice(0, 20).map((violation) => `   VIOLATION ${violation}`),
  ];
  console.log(lines.join('\n'));
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(`${RESULTS_DIR}${scenario.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}.json`, `${JSON.stringify(result, null, 2)}\n`);
  return result;
}
