/**
 * The development stack's settings, kept in .data/dev-env.json by `npm start`
 * so that `npm run token` and `npm run db:migrate` find the same database,
 * Redis and signing secret without any configuration.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { DATA_DIR } from './checkout.js';

const ENV_FILE = `${DATA_DIR}dev-env.json`;

export interface DevEnvironment {
  DATABASE_URL?: string;
  REDIS_URL?: string;
  /** 'memory' when the services run without Redis. */
  STATE_STORE?: string;
  JWT_SECRET?: string;
}

export function readDevEnvironment(): DevEnvironment {
  return existsSync(ENV_FILE) ? (JSON.parse(readFileSync(ENV_FILE, 'utf8')) as DevEnvironment) : {};
}

export function writeDevEnvironment(environment: DevEnvironment): void {
  mkdirSync(DATA_DIR, { recursive: true });
  writeFileSync(ENV_FILE, `${JSON.stringify(environment, null, 2)}\n`, { mode: 0o600 });
}

/** process.env first, then what `npm start` recorded. */
export function settingOf(name: keyof DevEnvironment): string | undefined {
  return process.env[name] || readDevEnvironment()[name];
}
