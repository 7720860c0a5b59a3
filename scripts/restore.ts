/**
 * `npm run db:restore -- <file> [--key-file <path>] [--create | --force]`:
 * restores a backup of `npm run db:backup` into DATABASE_URL's database.
 *
 * 1. Reads and checks the whole file first (its checksum, or every chunk's
 *    GCM tag with the key file), into a private temporary directory; a wrong
 *    key, a damaged or altered file stops here, before the server is touched.
 * 2. Creates the roles the schema needs that the cluster lacks (as they were
 *    in the source, password hashes included when the backup has them); roles
 *    that exist are left as they are.
 * 3. pg_restore --single-transaction --exit-on-error: all of it or nothing.
 * 4. Checks every table's row count against the counts the backup recorded
 *    in its snapshot, and ANALYZEs.
 *
 * The target: an existing empty database (default); `--create` creates it
 * (it must not exist); `--force` replaces an existing one: the backup is
 * restored and checked in a new database first, and only then is the old one
 * dropped and the new one renamed in its place.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { databaseConnection } from '@clinical/db';
import pg from 'pg';
import {
  BackupFileError,
  databaseOf,
  libpqConnection,
  PayloadSplitter,
  postgresProgram,
  quoteIdentifier,
  quoteLiteral,
  readBackup,
  readKeyFile,
  withDatabase,
  type BackupManifest,
  type RoleDefinition,
} from './backupArchive.js';
import { settingOf } from './devEnvironment.js';

const USAGE = 'usage: npm run db:restore -- <file> [--key-file <path>] [--create | --force]';
const say = (message: string) => process.stdout.write(`db:restore: ${message}\n`);
const fail = (message: string, code = 1): never => {
  process.stderr.write(`db:restore: ${message}\n`);
  process.exit(code);
};

/** A refusal once the work has started: thrown, so that the temporary files go too. */
class Refused extends BackupFileError {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: { 'key-file': { type: 'string' }, create: { type: 'boolean', default: false }, force: { type: 'boolean', default: false } },
    });
  } catch (error) {
    return fail(`${(error as Error).message}\n${USAGE}`, 64);
  }
})();
if (positionals.length !== 1 || (values.create && values.force)) {
  fail(USAGE, 64);
}
const source = positionals[0] as string;
const databaseUrl =
  settingOf('DATABASE_URL') ?? fail('set DATABASE_URL: the database to restore into, as a role that may create roles and databases (a superuser)', 78);
const target = (() => {
  try {
    return databaseOf(databaseUrl);
  } catch (error) {
    return fail((error as Error).message, 78);
  }
})();

/** Runs a client program; resolves with its standard output, rejects with its standard error. */
function run(program: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let errors = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(output) : reject(new BackupFileError(`${program.split('/').pop()} failed (exit ${code}): ${errors.trim()}`)),
    );
  });
}

async function connect(url: string): Promise<pg.Client> {
  const connection = databaseConnection(url);
  const client = new pg.Client({ connectionString: connection.url, ssl: connection.ssl, application_name: 'db:restore' });
  client.on('error', () => {
    // Reported by the query that fails.
  });
  await client.connect();
  return client;
}

function createRoleStatement(role: RoleDefinition): string {
  const flag = (on: boolean, name: string) => (on ? name : `NO${name}`);
  return [
    `CREATE ROLE ${quoteIdentifier(role.name)} WITH`,
    flag(role.superuser, 'SUPERUSER'),
    flag(role.inherit, 'INHERIT'),
    flag(role.createRole, 'CREATEROLE'),
    flag(role.createDb, 'CREATEDB'),
    flag(role.login, 'LOGIN'),
    flag(role.replication, 'REPLICATION'),
    flag(role.bypassRls, 'BYPASSRLS'),
    `CONNECTION LIMIT ${Number(role.connectionLimit)}`,
    ...(role.validUntil ? [`VALID UNTIL ${quoteLiteral(role.validUntil)}`] : []),
    ...(role.passwordHash ? [`PASSWORD ${quoteLiteral(role.passwordHash)}`] : []),
  ].join(' ');
}

/** Creates the roles the cluster lacks, and the memberships among them. */
async function ensureRoles(admin: pg.Client, manifest: BackupManifest): Promise<{ created: string[]; kept: string[] }> {
  const created: string[] = [];
  const kept: string[] = [];
  for (const role of manifest.roles) {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role.name]);
    if (rowCount) {
      kept.push(role.name);
      continue;
    }
    try {
      await admin.query(createRoleStatement(role));
      created.push(role.name);
    } catch (error) {
      // Created meanwhile by someone else (roles are cluster-wide): as good.
      if ((error as { code?: string }).code !== '42710') {
        throw new BackupFileError(`cannot create role ${role.name} (${(error as Error).message}): restore as a superuser`);
      }
      kept.push(role.name);
    }
  }
  for (const { role, member, adminOption } of manifest.memberships) {
    await admin.query(`GRANT ${quoteIdentifier(role)} TO ${quoteIdentifier(member)}${adminOption ? ' WITH ADMIN OPTION' : ''}`);
  }
  return { created, kept };
}

/** Objects in the database besides PostgreSQL's own: tables, views, sequences, functions, types. */
async function objectCount(url: string): Promise<number> {
  const client = await connect(url);
  try {
    const { rows } = await client.query<{ objects: string }>(`
      SELECT (SELECT count(*) FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
                 AND n.nspname NOT LIKE 'pg\\_temp%')
           + (SELECT count(*) FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
               WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')) AS objects`);
    return Number(rows[0]?.objects);
  } finally {
    await client.end();
  }
}

/** Every table the backup counted has the same count restored; then fresh planner statistics. */
async function checkRestored(url: string, manifest: BackupManifest): Promise<number> {
  const client = await connect(url);
  try {
    const mismatches: string[] = [];
    let rows = 0;
    for (const table of manifest.tables) {
      const { rows: counted } = await client.query<{ rows: string }>(
        `SELECT count(*) AS rows FROM ${quoteIdentifier(table.schema)}.${quoteIdentifier(table.name)}`,
      );
      const restored = Number(counted[0]?.rows);
      rows += restored;
      if (restored !== table.rows) {
        mismatches.push(`${table.schema}.${table.name}: ${restored} rows restored, ${table.rows} in the backup`);
      }
    }
    if (mismatches.length > 0) {
      throw new BackupFileError(`the restored database does not match the backup:\n  ${mismatches.join('\n  ')}`);
    }
    await client.query('ANALYZE');
    return rows;
  } finally {
    await client.end();
  }
}

const started = Date.now();
let workDir: string | undefined;
let admin: pg.Client | undefined;
/** A database this run created, dropped again if the restore fails. */
let createdDatabase: string | undefined;
try {
  const keyMaterial = values['key-file'] ? await readKeyFile(values['key-file']) : undefined;
  const pgRestore = postgresProgram('pg_restore');

  // 1. The whole file, checked, before anything on the server.
  workDir = await mkdtemp(join(tmpdir(), 'db-restore-'));
  const archivePath = join(workDir, 'archive.dump');
  const archive = await open(archivePath, 'wx', 0o600);
  const splitter = new PayloadSplitter(async (bytes) => {
    for (let offset = 0; offset < bytes.length; ) {
      offset += (await archive.write(bytes, offset, bytes.length - offset)).bytesWritten;
    }
  });
  try {
    await readBackup(source, keyMaterial, (bytes) => splitter.consume(bytes));
  } finally {
    await archive.close();
  }
  const manifest = splitter.manifest;
  if (!manifest) {
    throw new Refused(`${source} holds no manifest`, 65);
  }
  await run(pgRestore, ['--list', archivePath], process.env);
  say(`${source}: checked; ${manifest.database} as of snapshot ${manifest.snapshot} (PostgreSQL ${manifest.serverVersion}), ${manifest.tables.length} tables`);

  // 2. The target.
  admin = await connect(withDatabase(databaseUrl, 'postgres'));
  const exists = Boolean((await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [target])).rowCount);
  if (values.create && exists) {
    throw new Refused(`database ${target} exists: --create makes a new one (drop --create to restore into it while it is empty, or --force to replace it)`, 73);
  }
  if (!exists && !values.create && !values.force) {
    throw new Refused(`database ${target} does not exist: --create makes it`, 73);
  }
  if (exists && !values.force) {
    const objects = await objectCount(databaseUrl);
    if (objects > 0) {
      throw new Refused(`database ${target} is not empty (${objects} objects): restore into a new database (--create), or replace this one (--force)`, 73);
    }
  }

  // 3. Roles, the database, the restore.
  const roles = await ensureRoles(admin, manifest);
  say(`roles: ${roles.created.length > 0 ? `created ${roles.created.join(', ')}` : 'none created'}${roles.kept.length > 0 ? `; kept as they are ${roles.kept.join(', ')}` : ''}`);
  const restoreInto = exists && values.force ? `${target.slice(0, 40)}_restoring_${randomBytes(4).toString('hex')}` : target;
  if (restoreInto !== target || !exists) {
    const owner = (await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [manifest.databaseOwner])).rowCount
      ? ` OWNER ${quoteIdentifier(manifest.databaseOwner)}`
      : '';
    await admin.query(`CREATE DATABASE ${quoteIdentifier(restoreInto)} TEMPLATE template0 ENCODING ${quoteLiteral(manifest.encoding)}${owner}`);
    createdDatabase = restoreInto;
  }
  const restoreUrl = withDatabase(databaseUrl, restoreInto);
  const libpq = libpqConnection(databaseUrl, restoreInto);
  await run(pgRestore, ['--exit-on-error', '--single-transaction', '--no-password', `--dbname=${libpq.url}`, archivePath], libpq.env);
  const rows = await checkRestored(restoreUrl, manifest);

  // 4. In place.
  if (restoreInto !== target) {
    await admin.query(`DROP DATABASE ${quoteIdentifier(target)} WITH (FORCE)`);
    await admin.query(`ALTER DATABASE ${quoteIdentifier(restoreInto)} RENAME TO ${quoteIdentifier(target)}`);
    say(`replaced database ${target}`);
  }
  createdDatabase = undefined;
  say(
    `restored into ${target}: ${manifest.tables.length} tables, ${rows} rows, every count as in the backup; ` +
      `in ${((Date.now() - started) / 1_000).toFixed(1)} s. Verify the audit trail (AuditService/VerifyAuditTrail) before serving.`,
  );
} catch (error) {
  if (createdDatabase && admin) {
    await admin.query(`DROP DATABASE IF EXISTS ${quoteIdentifier(createdDatabase)} WITH (FORCE)`).catch(() => {});
  }
  process.exitCode = error instanceof Refused ? error.exitCode : 1;
  process.stderr.write(`db:restore: ${error instanceof BackupFileError ? error.message : `failed: ${(error as Error).message}`}\n`);
} finally {
  await admin?.end().catch(() => {});
  if (workDir) {
    await rm(workDir, { recursive: true, force: true });
  }
}
