/**
 * `npm run db:backup -- <file> [--key-file <path>] [--snapshot <id>]`: a
 * logical backup of DATABASE_URL's database in one file (see
 * backupArchive.ts): pg_dump's custom format, the cluster roles the schema
 * needs (owners and grantees: the services' roles, the audit purger), and
 * every table's row count, all as of ONE snapshot. pg_dump reads the whole
 * database in a single REPEATABLE READ snapshot, exported here and shared with
 * it, so the backup is consistent while the services keep writing: a
 * transaction is in it entirely or not at all, and the audit trail, its hash
 * chain, the chain head and the events still waiting for the sealer agree
 * with each other.
 *
 * `--key-file`: encrypts (AES-256-GCM, key from the file through HKDF); the
 * file never holds the payload in clear. `--snapshot`: dump a snapshot that
 * another session exported (pg_export_snapshot()) and keeps open, as
 * pg_dump --snapshot does.
 *
 * The file is written as <file>.partial and renamed once complete and
 * flushed: a backup that failed never looks like one that succeeded.
 */
import { spawn } from 'node:child_process';
import { rename, rm, stat } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { databaseConnection } from '@clinical/db';
import pg from 'pg';
import {
  BackupFileError,
  BackupWriter,
  libpqConnection,
  PayloadSplitter,
  postgresProgram,
  quoteIdentifier,
  readKeyFile,
  type BackupManifest,
  type RoleDefinition,
} from './backupArchive.js';
import { settingOf } from './devEnvironment.js';

const USAGE = 'usage: npm run db:backup -- <file> [--key-file <path>] [--snapshot <exported snapshot id>]';
const fail = (message: string, code = 1): never => {
  process.stderr.write(`db:backup: ${message}\n`);
  process.exit(code);
};

const { values, positionals } = (() => {
  try {
    return parseArgs({
      allowPositionals: true,
      options: { 'key-file': { type: 'string' }, snapshot: { type: 'string' } },
    });
  } catch (error) {
    return fail(`${(error as Error).message}\n${USAGE}`, 64);
  }
})();
if (positionals.length !== 1) {
  fail(USAGE, 64);
}
const target = positionals[0] as string;
const databaseUrl = settingOf('DATABASE_URL') ?? fail('set DATABASE_URL (a role that may read every table: the owner or a superuser)', 78);
if (values.snapshot !== undefined && !/^[0-9A-F]+-[0-9A-F]+(-[0-9]+)?$/.test(values.snapshot)) {
  fail('--snapshot: a snapshot id as pg_export_snapshot() returns it, e.g. 00000003-0000001B-1', 64);
}
if (await stat(target).then(() => true, () => false)) {
  fail(`${target} exists; a backup never overwrites one`, 73);
}

/** The roles the database's objects refer to, and the memberships among them. */
async function rolesOf(client: pg.Client): Promise<Pick<BackupManifest, 'roles' | 'memberships'>> {
  const { rows: superuser } = await client.query<{ rolsuper: boolean }>('SELECT rolsuper FROM pg_roles WHERE rolname = current_user');
  // Owners, grantees and policy roles of this database's objects (pg_shdepend), and the database's owner.
  // The bootstrap superuser (oid 10) and the predefined pg_* roles exist in every cluster.
  const { rows } = await client.query<{
    rolname: string; rolsuper: boolean; rolinherit: boolean; rolcreaterole: boolean; rolcreatedb: boolean; rolcanlogin: boolean;
    rolreplication: boolean; rolbypassrls: boolean; rolconnlimit: number; rolvaliduntil: Date | null; password: string | null;
  }>(`
    WITH referenced AS (
      SELECT d.refobjid AS oid FROM pg_shdepend AS d
       WHERE d.refclassid = 'pg_authid'::regclass
         AND d.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
      UNION SELECT datdba FROM pg_database WHERE datname = current_database()
    )
    SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication,
           r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil,
           ${superuser[0]?.rolsuper ? '(SELECT a.rolpassword FROM pg_authid AS a WHERE a.oid = r.oid)' : 'NULL::text'} AS password
      FROM pg_roles AS r JOIN referenced USING (oid)
     WHERE r.oid >= 16384
     ORDER BY r.rolname`);
  const roles: RoleDefinition[] = rows.map((row) => ({
    name: row.rolname,
    superuser: row.rolsuper,
    inherit: row.rolinherit,
    createRole: row.rolcreaterole,
    createDb: row.rolcreatedb,
    login: row.rolcanlogin,
    replication: row.rolreplication,
    bypassRls: row.rolbypassrls,
    connectionLimit: row.rolconnlimit,
    validUntil: row.rolvaliduntil && Number.isFinite(row.rolvaliduntil.getTime()) ? row.rolvaliduntil.toISOString() : null,
    passwordHash: row.password,
  }));
  const names = roles.map((role) => role.name);
  const { rows: memberships } = await client.query<{ role: string; member: string; admin_option: boolean }>(
    `SELECT r.rolname AS role, m.rolname AS member, a.admin_option
       FROM pg_auth_members AS a JOIN pg_roles AS r ON r.oid = a.roleid JOIN pg_roles AS m ON m.oid = a.member
      WHERE r.rolname = ANY($1) AND m.rolname = ANY($1)
      ORDER BY 1, 2`,
    [names],
  );
  return { roles, memberships: memberships.map(({ role, member, admin_option }) => ({ role, member, adminOption: admin_option })) };
}

/** Every ordinary table and partition, with its row count in the transaction's snapshot. */
async function tablesOf(client: pg.Client): Promise<BackupManifest['tables']> {
  const { rows } = await client.query<{ schema: string; name: string }>(`
    SELECT n.nspname AS schema, c.relname AS name
      FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%'
       AND n.nspname NOT LIKE 'pg\\_temp%'
     ORDER BY 1, 2`);
  const tables: { schema: string; name: string; rows: number }[] = [];
  for (const { schema, name } of rows) {
    const { rows: counted } = await client.query<{ rows: string }>(
      `SELECT count(*) AS rows FROM ${quoteIdentifier(schema)}.${quoteIdentifier(name)}`,
    );
    tables.push({ schema, name, rows: Number(counted[0]?.rows) });
  }
  return tables;
}

async function pgDumpVersion(program: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['--version'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('close', () => resolve(output.trim()));
  });
}

const started = Date.now();
const pgDump = (() => {
  try {
    return postgresProgram('pg_dump');
  } catch (error) {
    return fail((error as Error).message, 69);
  }
})();
let keyMaterial: Buffer | undefined;
try {
  keyMaterial = values['key-file'] ? await readKeyFile(values['key-file']) : undefined;
} catch (error) {
  fail((error as Error).message, 66);
}

const connection = databaseConnection(databaseUrl);
const client = new pg.Client({ connectionString: connection.url, ssl: connection.ssl, application_name: 'db:backup' });
client.on('error', () => {
  // Reported by the query that fails.
});
try {
  await client.connect();
} catch (error) {
  fail(`cannot connect to the database (${(error as Error).message})`, 69);
}

const partial = `${target}.partial`;
let writer: BackupWriter | undefined;
try {
  // One snapshot for everything: the counts here, the roles, and pg_dump's whole read.
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
  let snapshot: string;
  if (values.snapshot) {
    await client.query(`SET TRANSACTION SNAPSHOT '${values.snapshot}'`);
    snapshot = values.snapshot;
  } else {
    const { rows } = await client.query<{ snapshot: string }>('SELECT pg_export_snapshot() AS snapshot');
    snapshot = (rows[0] as { snapshot: string }).snapshot;
  }
  const { rows: about } = await client.query<{ database: string; owner: string; encoding: string; version: string }>(`
    SELECT d.datname AS database, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding,
           current_setting('server_version') AS version
      FROM pg_database AS d WHERE d.datname = current_database()`);
  const info = about[0] as { database: string; owner: string; encoding: string; version: string };
  const manifest: BackupManifest = {
    database: info.database,
    databaseOwner: info.owner,
    encoding: info.encoding,
    serverVersion: info.version,
    pgDumpVersion: await pgDumpVersion(pgDump),
    snapshot,
    ...(await rolesOf(client)),
    tables: await tablesOf(client),
  };

  await rm(partial, { force: true });
  writer = await BackupWriter.create(partial, keyMaterial);
  await writer.write(PayloadSplitter.encodeManifest(manifest));

  const libpq = libpqConnection(databaseUrl);
  const dump = spawn(pgDump, ['--format=custom', `--snapshot=${snapshot}`, '--no-password', `--dbname=${libpq.url}`], {
    env: libpq.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let dumpErrors = '';
  dump.stderr.on('data', (chunk: Buffer) => (dumpErrors += chunk.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    dump.once('error', reject);
    dump.once('close', (code) => resolve(code));
  });
  for await (const chunk of dump.stdout as AsyncIterable<Buffer>) {
    await writer.write(chunk);
  }
  const code = await exited;
  if (code !== 0) {
    throw new BackupFileError(`pg_dump failed (exit ${code}): ${dumpErrors.trim()}`);
  }
  await writer.finish();
  await client.query('COMMIT');
  await rename(partial, target);
  const rows = manifest.tables.reduce((sum, table) => sum + table.rows, 0);
  process.stdout.write(
    `db:backup: ${target}: ${manifest.database} as of snapshot ${snapshot}, ${manifest.tables.length} tables, ${rows} rows, ` +
      `roles ${manifest.roles.map((role) => role.name).join(', ')}; ${(writer.written / 1_048_576).toFixed(1)} MiB, ` +
      `${keyMaterial ? 'encrypted (AES-256-GCM)' : 'NOT encrypted'}, in ${((Date.now() - started) / 1_000).toFixed(1)} s\n`,
  );
  await client.end();
} catch (error) {
  await writer?.abandon();
  await rm(partial, { force: true });
  await client.end().catch(() => {});
  fail(error instanceof BackupFileError ? error.message : `failed: ${(error as Error).message}`);
}
