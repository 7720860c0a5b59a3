/**
 * `npm run ops:report [-- --json] [--top <n>] [--long-after <seconds>]`: the
 * monitoring the old system kept as saved queries, in one report on the
 * terminal (plain aligned tables), or one JSON document with `--json`.
 *
 * PostgreSQL (DATABASE_URL, else the `npm start` stack's): server facts, slow
 * queries (pg_stat_statements, or how to enable it), table and index sizes,
 * bloat (the dead-tuple ratio the statistics keep), unused indexes, cache hit
 * ratios, long transactions, blocked and blocking sessions, replication lag,
 * the age of analytics-svc's materialized view (its refresh log), the audit
 * chain's backlog. Redis (REDIS_URL or REDIS_CLUSTER_NODES, else the stack's):
 * memory, hit rate, clients.
 *
 * No patient data: sessions are shown by pid, state, durations, wait and
 * application_name, with the first keyword of their statement at most (never
 * pg_stat_activity's text, which holds whatever literals the client sent);
 * pg_stat_statements' text is shown for DML alone (normalized: constants are
 * $n), with comments removed, and a utility statement (whose text PostgreSQL 15
 * keeps verbatim) by its keyword only.
 *
 * Every section fails soft: a query refused (permissions, missing extension,
 * lock timeout) prints why and the report goes on. Exit 0 once the report has
 * run; 64 for bad arguments; 78 when neither PostgreSQL nor Redis is configured.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { parseArgs } from 'node:util';
import { databaseConnection } from '@clinical/db';
import { Redis } from 'ioredis';
import pg from 'pg';
import { readDevEnvironment, settingOf } from './devEnvironment.js';

const USAGE = 'usage: npm run ops:report -- [--json] [--top <n>] [--long-after <seconds>]';

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        json: { type: 'boolean', default: false },
        top: { type: 'string', default: '10' },
        'long-after': { type: 'string', default: '60' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    process.stderr.write(`ops:report: ${(error as Error).message}\n${USAGE}\n`);
    process.exit(64);
  }
})();
if (values.help) {
  process.stdout.write(`${USAGE}\n  --json           one JSON document instead of tables\n  --top <n>        rows per ranking (10)\n  --long-after <s> a transaction open longer than this is long (60)\n`);
  process.exit(0);
}
const top = Number(values.top);
const longAfter = Number(values['long-after']);
if (!Number.isInteger(top) || top < 1 || !Number.isFinite(longAfter) || longAfter < 0) {
  process.stderr.write(`ops:report: --top takes a positive integer, --long-after seconds (>= 0)\n${USAGE}\n`);
  process.exit(64);
}

// ---------------------------------------------------------------------------
// The report's model: sections of facts and tables, rendered as text or JSON.
// ---------------------------------------------------------------------------

type Kind = 'text' | 'int' | 'bytes' | 'seconds' | 'ms' | 'percent' | 'ago' | 'pids';

interface Column {
  readonly key: string;
  readonly header: string;
  readonly kind?: Kind;
}

interface Table {
  readonly title?: string;
  readonly columns: readonly Column[];
  readonly rows: readonly Record<string, unknown>[];
  /** Printed instead of an empty table. */
  readonly empty: string;
}

interface Fact {
  readonly label: string;
  readonly value: unknown;
  readonly kind?: Kind;
  /** Said after the value, in text only. */
  readonly note?: string;
}

interface Section {
  readonly title: string;
  /** Where the figures come from. */
  source?: string;
  readonly facts: Fact[];
  readonly tables: Table[];
  readonly notes: string[];
  /** Why the section could not be (completely) reported. */
  error?: string;
}

/** The server's clock when the report began: ages of timestamps are measured against it. */
let serverNow = Date.now();

function formatSeconds(seconds: number): string {
  if (seconds < 60) {
    return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  }
  const s = Math.floor(seconds);
  const [d, h, m, r] = [Math.floor(s / 86_400), Math.floor((s % 86_400) / 3_600), Math.floor((s % 3_600) / 60), s % 60];
  const two = (n: number) => String(n).padStart(2, '0');
  return d > 0 ? `${d}d ${two(h)}h` : h > 0 ? `${h}h ${two(m)}m` : `${m}m ${two(r)}s`;
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function format(value: unknown, kind: Kind = 'text'): string {
  if (value === null || value === undefined) {
    return kind === 'ago' ? 'never' : kind === 'percent' ? 'n/a' : '';
  }
  switch (kind) {
    case 'int':
      return Number(value).toLocaleString('en-US');
    case 'bytes':
      return formatBytes(Number(value));
    case 'seconds':
      return formatSeconds(Number(value));
    case 'ms': {
      const ms = Number(value);
      return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
    }
    case 'percent':
      return `${(Number(value) * 100).toFixed(1)}%`;
    case 'ago': {
      const at = value instanceof Date ? value.getTime() : Date.parse(String(value));
      return `${formatSeconds(Math.max(0, (serverNow - at) / 1000))} ago`;
    }
    case 'pids':
      return (value as unknown[]).join(',');
    default:
      return String(value);
  }
}

const RIGHT: ReadonlySet<Kind> = new Set(['int', 'bytes', 'seconds', 'ms', 'percent']);

function renderTable(table: Table, indent: string): string[] {
  const lines: string[] = [];
  if (table.title) {
    lines.push(`${indent}${table.title}`);
  }
  if (table.rows.length === 0) {
    lines.push(`${indent}${table.empty}`);
    return lines;
  }
  const cells = table.rows.map((row) => table.columns.map((column) => format(row[column.key], column.kind)));
  const widths = table.columns.map((column, i) => Math.max(column.header.length, ...cells.map((row) => (row[i] as string).length)));
  const line = (values: readonly string[]) =>
    `${indent}${values
      .map((value, i) => (RIGHT.has(table.columns[i]?.kind ?? 'text') ? value.padStart(widths[i] as number) : value.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd()}`;
  lines.push(line(table.columns.map((column) => column.header)));
  lines.push(line(widths.map((width) => '-'.repeat(width))));
  for (const row of cells) {
    lines.push(line(row));
  }
  return lines;
}

function renderText(sections: readonly Section[], header: readonly string[]): string {
  const out: string[] = [...header, ''];
  for (const section of sections) {
    out.push(`== ${section.title} ==`);
    if (section.source) {
      out.push(`   source: ${section.source}`);
    }
    if (section.error) {
      out.push(`   unavailable: ${section.error}`);
    }
    const width = Math.max(0, ...section.facts.map((fact) => fact.label.length));
    for (const fact of section.facts) {
      out.push(`   ${`${fact.label}:`.padEnd(width + 1)} ${format(fact.value, fact.kind)}${fact.note ? ` ${fact.note}` : ''}`);
    }
    for (const table of section.tables) {
      out.push('');
      out.push(...renderTable(table, '   '));
    }
    if (section.notes.length > 0) {
      out.push('');
      out.push(...section.notes.map((note) => `   ${note}`));
    }
    out.push('');
  }
  return `${out.join('\n')}\n`;
}

function renderJson(sections: readonly Section[], meta: Record<string, unknown>): string {
  return `${JSON.stringify(
    {
      ...meta,
      sections: sections.map((section) => ({
        title: section.title,
        status: section.error ? 'unavailable' : 'ok',
        ...(section.source ? { source: section.source } : {}),
        ...(section.error ? { error: section.error } : {}),
        facts: Object.fromEntries(section.facts.map((fact) => [fact.label, fact.value ?? null])),
        tables: section.tables.map((table) => ({ ...(table.title ? { title: table.title } : {}), rows: table.rows })),
        notes: section.notes,
      })),
    },
    null,
    2,
  )}\n`;
}

function reason(error: unknown): string {
  const { message, code } = error as { message?: string; code?: string };
  return `${message ?? String(error)}${code && /^[0-9A-Z]{5}$/.test(code) ? ` (SQLSTATE ${code})` : ''}`;
}

/** Runs `fill` on a new section; whatever it throws becomes the section's error, and the report goes on. */
async function section(title: string, fill: (section: Section) => Promise<void>): Promise<Section> {
  const result: Section = { title, facts: [], tables: [], notes: [] };
  try {
    await fill(result);
  } catch (error) {
    result.error = reason(error);
  }
  return result;
}

// ---------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------

/** bigint and numeric as numbers: the figures here are counts and sizes, far below 2^53. */
const numberTypes = {
  getTypeParser: ((oid: number, formatName?: string) =>
    oid === 20 || oid === 1700 ? (text: string) => Number(text) : pg.types.getTypeParser(oid, formatName as 'text')) as typeof pg.types.getTypeParser,
};

type Rows = Record<string, unknown>[];

async function rowsOf(client: pg.Client, text: string, parameters: unknown[] = []): Promise<Rows> {
  return (await client.query(text, parameters)).rows as Rows;
}

async function oneRow(client: pg.Client, text: string, parameters: unknown[] = []): Promise<Record<string, unknown>> {
  return (await rowsOf(client, text, parameters))[0] ?? {};
}

const ENABLE_PG_STAT_STATEMENTS = [
  'To enable pg_stat_statements (superuser; needs a restart):',
  "  1. postgresql.conf: shared_preload_libraries = 'pg_stat_statements'   (keep any libraries already listed)",
  '     compute_query_id = auto (the default; on also works)    pg_stat_statements.track = top',
  '  2. restart PostgreSQL (a reload is not enough for shared_preload_libraries)',
  '  3. in this database: CREATE EXTENSION pg_stat_statements;',
  '  Managed services: add pg_stat_statements to the parameter group\'s shared_preload_libraries, reboot, then step 3.',
];

/** DML keeps its constants out of pg_stat_statements ($n); any other statement's text is verbatim. */
const NORMALIZED_COMMANDS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'WITH', 'MERGE', 'VALUES', 'TABLE']);

/** pg_stat_statements' text as it may be shown: DML without comments, on one line, at most `width` characters. */
function statementText(query: string, width = 90): string {
  if (query === '<insufficient privilege>') {
    return query;
  }
  const bare = query
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/--[^\n]*/g, ' ')
    .replace(/\s+/g, ' ')
    .trim();
  const keyword = /^[A-Za-z]+/.exec(bare)?.[0]?.toUpperCase() ?? '';
  if (!NORMALIZED_COMMANDS.has(keyword)) {
    return `(${keyword || 'statement'}: utility statement, text not shown)`;
  }
  return bare.length > width ? `${bare.slice(0, width - 1)}…` : bare;
}

async function slowQueries(client: pg.Client, s: Section): Promise<void> {
  s.source = 'pg_stat_statements (this database; times since its last reset)';
  // Reading it takes a superuser or pg_read_all_settings (pg_monitor has it); without, the view's answer tells.
  const preload = await oneRow(client, 'SHOW shared_preload_libraries').then(
    (row) => String(row.shared_preload_libraries ?? ''),
    (error: unknown) => {
      s.facts.push({ label: 'shared_preload_libraries', value: `not readable (${reason(error)}): grant pg_monitor to see it` });
      return undefined;
    },
  );
  /** Whether the library is preloaded; undefined: cannot tell. */
  const loaded = preload === undefined ? undefined : preload.split(',').map((name) => name.trim().replace(/^"|"$/g, '')).includes('pg_stat_statements');
  const extension = await oneRow(
    client,
    `SELECT quote_ident(n.nspname) AS schema, e.extversion AS version
       FROM pg_extension AS e JOIN pg_namespace AS n ON n.oid = e.extnamespace
      WHERE e.extname = 'pg_stat_statements'`,
  );
  if (!extension.schema) {
    s.facts.push({ label: 'pg_stat_statements', value: loaded ? 'loaded, but not installed in this database' : 'not installed' });
    s.notes.push(...(loaded ? ['In this database: CREATE EXTENSION pg_stat_statements;'] : ENABLE_PG_STAT_STATEMENTS));
    return;
  }
  s.facts.push({ label: 'pg_stat_statements', value: `installed (${extension.version as string}) in schema ${extension.schema as string}` });
  if (loaded === false) {
    // Created, but the library is not loaded: every read of the view fails, and the section says so.
    s.notes.push(...ENABLE_PG_STAT_STATEMENTS);
  }
  const view = `${extension.schema as string}.pg_stat_statements`;
  const info = await oneRow(client, `SELECT stats_reset FROM ${extension.schema as string}.pg_stat_statements_info`).catch(() => ({}) as Record<string, unknown>);
  if (info.stats_reset) {
    s.facts.push({ label: 'since', value: info.stats_reset, kind: 'ago' });
  }
  const columns: Column[] = [
    { key: 'calls', header: 'calls', kind: 'int' },
    { key: 'total_ms', header: 'total', kind: 'ms' },
    { key: 'mean_ms', header: 'mean', kind: 'ms' },
    { key: 'max_ms', header: 'max', kind: 'ms' },
    { key: 'rows', header: 'rows', kind: 'int' },
    { key: 'hit_ratio', header: 'cache hit', kind: 'percent' },
    { key: 'query', header: 'query (normalized)' },
  ];
  const ranked = async (order: string) =>
    (
      await rowsOf(
        client,
        `SELECT queryid::text AS queryid, calls, total_exec_time AS total_ms, mean_exec_time AS mean_ms, max_exec_time AS max_ms, rows,
                shared_blks_hit::float8 / nullif(shared_blks_hit + shared_blks_read, 0) AS hit_ratio, query
           FROM ${view}
          WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          ORDER BY ${order} DESC NULLS LAST
          LIMIT $1`,
        [top],
      )
    ).map((row) => ({ ...row, query: statementText(String(row.query ?? '')) }));
  s.tables.push({ title: `top ${top} by total time`, columns, rows: await ranked('total_exec_time'), empty: 'no statements recorded yet' });
  s.tables.push({ title: `top ${top} by mean time`, columns, rows: await ranked('mean_exec_time'), empty: 'no statements recorded yet' });
  s.notes.push('Statements are normalized by PostgreSQL (constants shown as $1, $2...); utility statements are shown by keyword only.');
}

async function serverFacts(client: pg.Client, s: Section): Promise<void> {
  s.source = 'version(), pg_stat_database, pg_stat_activity';
  const row = await oneRow(
    client,
    `SELECT current_setting('server_version') AS version, current_database() AS database, current_user AS "user",
            pg_is_in_recovery() AS replica, now() - pg_postmaster_start_time() AS uptime_interval,
            extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime,
            pg_database_size(current_database()) AS size,
            (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS connections,
            current_setting('max_connections')::int AS max_connections,
            (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) AS stats_reset`,
  );
  s.facts.push(
    { label: 'server', value: `PostgreSQL ${row.version as string}, ${row.replica ? 'replica (in recovery)' : 'primary'}` },
    { label: 'database', value: `${row.database as string} as ${row.user as string}` },
    { label: 'database size', value: row.size, kind: 'bytes' },
    { label: 'up for', value: row.uptime, kind: 'seconds' },
    { label: 'client connections', value: `${row.connections as number} of max_connections ${row.max_connections as number}` },
    { label: 'statistics since', value: row.stats_reset ?? 'never reset (since the server was initialised)', kind: row.stats_reset ? 'ago' : 'text' },
  );
}

async function sizes(client: pg.Client, s: Section): Promise<void> {
  s.source = 'pg_total_relation_size (all of it), pg_relation_size (the heap), pg_indexes_size, the TOAST table; rows: pg_stat_user_tables.n_live_tup';
  const tables = await rowsOf(
    client,
    `SELECT c.oid::regclass::text AS name,
            CASE c.relkind WHEN 'm' THEN 'matview' WHEN 'p' THEN 'partitioned' ELSE 'table' END AS kind,
            pg_total_relation_size(c.oid) AS total, pg_relation_size(c.oid) AS heap, pg_indexes_size(c.oid) AS indexes,
            coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) AS toast, t.n_live_tup AS live_rows
       FROM pg_class AS c
       JOIN pg_namespace AS n ON n.oid = c.relnamespace
       LEFT JOIN pg_stat_user_tables AS t ON t.relid = c.oid
      WHERE c.relkind IN ('r', 'm', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY pg_total_relation_size(c.oid) DESC, 1
      LIMIT $1`,
    [top * 3],
  );
  s.tables.push({
    title: `tables (largest ${top * 3})`,
    columns: [
      { key: 'name', header: 'table' },
      { key: 'kind', header: 'kind' },
      { key: 'total', header: 'total', kind: 'bytes' },
      { key: 'heap', header: 'heap', kind: 'bytes' },
      { key: 'indexes', header: 'indexes', kind: 'bytes' },
      { key: 'toast', header: 'toast', kind: 'bytes' },
      { key: 'live_rows', header: 'live rows', kind: 'int' },
    ],
    rows: tables,
    empty: 'no tables',
  });
  const indexes = await rowsOf(
    client,
    `SELECT s.indexrelid::regclass::text AS name, s.relid::regclass::text AS "table", pg_relation_size(s.indexrelid) AS size,
            s.idx_scan AS scans, CASE WHEN x.indisprimary THEN 'primary' WHEN x.indisunique THEN 'unique' ELSE '' END AS kind
       FROM pg_stat_user_indexes AS s JOIN pg_index AS x ON x.indexrelid = s.indexrelid
      ORDER BY pg_relation_size(s.indexrelid) DESC, 1
      LIMIT $1`,
    [top * 2],
  );
  s.tables.push({
    title: `indexes (largest ${top * 2})`,
    columns: [
      { key: 'name', header: 'index' },
      { key: 'table', header: 'table' },
      { key: 'kind', header: 'kind' },
      { key: 'size', header: 'size', kind: 'bytes' },
      { key: 'scans', header: 'scans', kind: 'int' },
    ],
    rows: indexes,
    empty: 'no indexes',
  });
}

async function bloat(client: pg.Client, s: Section): Promise<void> {
  s.source =
    'dead-tuple ratio n_dead_tup / (n_live_tup + n_dead_tup) from pg_stat_user_tables (the statistics system\'s counts ' +
    'since the last vacuum; not the page-level estimation query: pgstattuple measures exactly)';
  const rows = await rowsOf(
    client,
    `SELECT relid::regclass::text AS name, n_live_tup AS live, n_dead_tup AS dead,
            n_dead_tup::float8 / nullif(n_live_tup + n_dead_tup, 0) AS dead_ratio, n_mod_since_analyze AS modified,
            last_autovacuum, last_vacuum, last_autoanalyze, last_analyze
       FROM pg_stat_user_tables
      ORDER BY n_dead_tup DESC, n_dead_tup::float8 / nullif(n_live_tup + n_dead_tup, 0) DESC NULLS LAST, 1
      LIMIT $1`,
    [top * 3],
  );
  s.tables.push({
    title: `tables by dead tuples (${top * 3} most)`,
    columns: [
      { key: 'name', header: 'table' },
      { key: 'live', header: 'live', kind: 'int' },
      { key: 'dead', header: 'dead', kind: 'int' },
      { key: 'dead_ratio', header: 'dead %', kind: 'percent' },
      { key: 'modified', header: 'changed since analyze', kind: 'int' },
      { key: 'last_autovacuum', header: 'last autovacuum', kind: 'ago' },
      { key: 'last_vacuum', header: 'last vacuum', kind: 'ago' },
      { key: 'last_autoanalyze', header: 'last autoanalyze', kind: 'ago' },
      { key: 'last_analyze', header: 'last analyze', kind: 'ago' },
    ],
    rows,
    empty: 'no tables',
  });
  const bloated = rows.filter((row) => Number(row.dead) >= 1000 && Number(row.dead_ratio) >= 0.2).map((row) => row.name as string);
  s.facts.push({ label: 'over 20% dead (and 1,000 dead rows)', value: bloated.length > 0 ? bloated.join(', ') : 'none' });
}

async function unusedIndexes(client: pg.Client, s: Section): Promise<void> {
  s.source = 'pg_stat_user_indexes.idx_scan = 0, unique, primary-key and constraint indexes left out';
  const rows = await rowsOf(
    client,
    `SELECT s.indexrelid::regclass::text AS name, s.relid::regclass::text AS "table", pg_relation_size(s.indexrelid) AS size,
            am.amname AS method
       FROM pg_stat_user_indexes AS s
       JOIN pg_index AS x ON x.indexrelid = s.indexrelid
       JOIN pg_class AS c ON c.oid = s.indexrelid
       JOIN pg_am AS am ON am.oid = c.relam
      WHERE s.idx_scan = 0 AND NOT x.indisunique AND NOT x.indisprimary AND NOT x.indisexclusion
        AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = s.indexrelid)
      ORDER BY pg_relation_size(s.indexrelid) DESC, 1`,
  );
  s.tables.push({
    columns: [
      { key: 'name', header: 'index' },
      { key: 'table', header: 'table' },
      { key: 'method', header: 'method' },
      { key: 'size', header: 'size', kind: 'bytes' },
    ],
    rows,
    empty: 'none: every other index has been scanned',
  });
  s.notes.push('Counts are this server\'s since its statistics were reset: an index only a replica or a monthly job uses looks unused here.');
}

async function cacheHits(client: pg.Client, s: Section): Promise<void> {
  s.source = 'pg_statio_user_tables (heap, index, TOAST blocks of user tables) and pg_stat_database (the whole database): shared_buffers hits / (hits + reads)';
  const io = await oneRow(
    client,
    `SELECT coalesce(sum(heap_blks_hit), 0) AS heap_hit, coalesce(sum(heap_blks_read), 0) AS heap_read,
            coalesce(sum(idx_blks_hit), 0) AS idx_hit, coalesce(sum(idx_blks_read), 0) AS idx_read,
            coalesce(sum(toast_blks_hit), 0) AS toast_hit, coalesce(sum(toast_blks_read), 0) AS toast_read
       FROM pg_statio_user_tables`,
  );
  const database = await oneRow(client, 'SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()');
  const ratio = (hit: unknown, read: unknown) => (Number(hit) + Number(read) > 0 ? Number(hit) / (Number(hit) + Number(read)) : null);
  s.tables.push({
    columns: [
      { key: 'scope', header: 'scope' },
      { key: 'hits', header: 'hits', kind: 'int' },
      { key: 'reads', header: 'reads', kind: 'int' },
      { key: 'ratio', header: 'hit ratio', kind: 'percent' },
    ],
    rows: [
      { scope: 'heap (tables)', hits: io.heap_hit, reads: io.heap_read, ratio: ratio(io.heap_hit, io.heap_read) },
      { scope: 'index', hits: io.idx_hit, reads: io.idx_read, ratio: ratio(io.idx_hit, io.idx_read) },
      { scope: 'toast', hits: io.toast_hit, reads: io.toast_read, ratio: ratio(io.toast_hit, io.toast_read) },
      { scope: 'database (all)', hits: database.blks_hit, reads: database.blks_read, ratio: ratio(database.blks_hit, database.blks_read) },
    ],
    empty: '',
  });
  const tables = await rowsOf(
    client,
    `SELECT relid::regclass::text AS name, heap_blks_read + coalesce(idx_blks_read, 0) AS reads,
            heap_blks_hit::float8 / nullif(heap_blks_hit + heap_blks_read, 0) AS heap_ratio,
            idx_blks_hit::float8 / nullif(idx_blks_hit + idx_blks_read, 0) AS index_ratio
       FROM pg_statio_user_tables
      WHERE heap_blks_read + coalesce(idx_blks_read, 0) > 0
      ORDER BY 2 DESC, 1
      LIMIT $1`,
    [top],
  );
  s.tables.push({
    title: `tables reading the most blocks from outside shared_buffers (${top})`,
    columns: [
      { key: 'name', header: 'table' },
      { key: 'reads', header: 'blocks read', kind: 'int' },
      { key: 'heap_ratio', header: 'heap hit', kind: 'percent' },
      { key: 'index_ratio', header: 'index hit', kind: 'percent' },
    ],
    rows: tables,
    empty: 'no table has read a block from outside shared_buffers',
  });
  s.notes.push('A "read" may still come from the operating system\'s page cache; below about 99% on a warm OLTP database, shared_buffers may be small.');
}

/** The first keyword of a session's statement, cut out in SQL: the text itself (with its literals) never leaves the server. */
const COMMAND = `upper(substring(query FROM '^\\s*([A-Za-z]+)'))`;

async function longTransactions(client: pg.Client, s: Section): Promise<void> {
  s.source = `pg_stat_activity: transactions open longer than ${longAfter} s, every database (statement text never shown: its first keyword at most)`;
  const rows = await rowsOf(
    client,
    `SELECT pid, datname AS database, usename AS "user", nullif(application_name, '') AS application, backend_type,
            state, concat_ws(':', wait_event_type, wait_event) AS wait,
            extract(epoch FROM now() - xact_start)::float8 AS xact_age, extract(epoch FROM now() - state_change)::float8 AS state_age,
            ${COMMAND} AS command, age(backend_xmin) AS xmin_age
       FROM pg_stat_activity
      WHERE xact_start IS NOT NULL AND now() - xact_start > make_interval(secs => $1) AND pid <> pg_backend_pid()
      ORDER BY xact_start, pid`,
    [longAfter],
  );
  s.tables.push({
    columns: [
      { key: 'pid', header: 'pid' },
      { key: 'xact_age', header: 'open for', kind: 'seconds' },
      { key: 'state', header: 'state' },
      { key: 'state_age', header: 'in state', kind: 'seconds' },
      { key: 'wait', header: 'waiting on' },
      { key: 'command', header: 'last command' },
      { key: 'database', header: 'database' },
      { key: 'user', header: 'user' },
      { key: 'application', header: 'application' },
      { key: 'xmin_age', header: 'xmin age', kind: 'int' },
    ],
    rows,
    empty: `none open longer than ${longAfter} s`,
  });
  const prepared = await oneRow(
    client,
    'SELECT count(*) AS count, extract(epoch FROM now() - min(prepared))::float8 AS oldest FROM pg_prepared_xacts',
  );
  s.facts.push({
    label: 'prepared transactions',
    value: Number(prepared.count) > 0 ? `${prepared.count as number}, oldest ${formatSeconds(Number(prepared.oldest))}` : 'none',
  });
  s.notes.push('"idle in transaction" holds its locks and its snapshot (xmin: vacuum cannot remove rows newer than it) until it ends.');
}

async function locks(client: pg.Client, s: Section): Promise<void> {
  s.source = 'pg_stat_activity, pg_blocking_pids(), pg_locks';
  const blocked = await rowsOf(
    client,
    `SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by, extract(epoch FROM now() - a.query_start)::float8 AS waiting,
            concat_ws(':', a.wait_event_type, a.wait_event) AS wait, ${COMMAND.replace('query', 'a.query')} AS command,
            w.locktype || ' ' || w.mode AS lock,
            coalesce(w.relation, (SELECT t.relation FROM pg_locks AS t WHERE t.pid = a.pid AND t.locktype = 'tuple' LIMIT 1))::regclass::text AS relation,
            a.datname AS database, nullif(a.application_name, '') AS application
       FROM pg_stat_activity AS a
       LEFT JOIN LATERAL (SELECT l.locktype, l.mode, l.relation FROM pg_locks AS l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) AS w ON true
      WHERE cardinality(pg_blocking_pids(a.pid)) > 0
      ORDER BY a.query_start, a.pid`,
  );
  s.tables.push({
    title: 'blocked sessions',
    columns: [
      { key: 'pid', header: 'blocked pid' },
      { key: 'blocked_by', header: 'blocked by', kind: 'pids' },
      { key: 'waiting', header: 'waiting', kind: 'seconds' },
      { key: 'wait', header: 'wait event' },
      { key: 'lock', header: 'lock wanted' },
      { key: 'relation', header: 'relation' },
      { key: 'command', header: 'command' },
      { key: 'database', header: 'database' },
      { key: 'application', header: 'application' },
    ],
    rows: blocked,
    empty: 'none: no session waits for another\'s lock',
  });
  const blockers = [...new Set(blocked.flatMap((row) => row.blocked_by as number[]))];
  if (blockers.length > 0) {
    const rows = await rowsOf(
      client,
      `SELECT a.pid, a.state, extract(epoch FROM now() - a.xact_start)::float8 AS xact_age,
              extract(epoch FROM now() - a.state_change)::float8 AS state_age, ${COMMAND.replace('query', 'a.query')} AS command,
              cardinality(pg_blocking_pids(a.pid)) > 0 AS also_blocked, a.datname AS database, nullif(a.application_name, '') AS application
         FROM pg_stat_activity AS a
        WHERE a.pid = ANY($1::int[])
        ORDER BY a.xact_start, a.pid`,
      [blockers],
    );
    s.tables.push({
      title: 'blocking sessions',
      columns: [
        { key: 'pid', header: 'pid' },
        { key: 'blocks', header: 'blocks', kind: 'pids' },
        { key: 'state', header: 'state' },
        { key: 'xact_age', header: 'transaction open for', kind: 'seconds' },
        { key: 'state_age', header: 'in state', kind: 'seconds' },
        { key: 'command', header: 'last command' },
        { key: 'also_blocked', header: 'itself blocked' },
        { key: 'database', header: 'database' },
        { key: 'application', header: 'application' },
      ],
      rows: rows.map((row) => ({
        ...row,
        blocks: blocked.filter((waiter) => (waiter.blocked_by as number[]).includes(row.pid as number)).map((waiter) => waiter.pid),
      })),
      empty: 'the blockers have ended meanwhile',
    });
  }
  s.facts.push({ label: 'blocked sessions', value: blocked.length });
}

async function replication(client: pg.Client, s: Section): Promise<void> {
  const { replica } = await oneRow(client, 'SELECT pg_is_in_recovery() AS replica');
  if (replica) {
    s.source = 'this server is a replica: pg_last_xact_replay_timestamp(), pg_last_wal_receive_lsn(), pg_stat_wal_receiver';
    const row = await oneRow(
      client,
      `SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_age,
              pg_last_xact_replay_timestamp() AS replayed_at,
              pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS unreplayed,
              pg_is_wal_replay_paused() AS paused,
              (SELECT status FROM pg_stat_wal_receiver) AS receiver, (SELECT sender_host FROM pg_stat_wal_receiver) AS sender`,
    );
    s.facts.push(
      { label: 'role', value: 'replica' },
      { label: 'replay lag', value: row.replay_age, kind: 'seconds', note: '(since the last transaction replayed was committed on the primary; grows while the primary is idle)' },
      { label: 'received, not replayed', value: row.unreplayed ?? 0, kind: 'bytes' },
      { label: 'replay paused', value: row.paused ? 'yes' : 'no' },
      { label: 'WAL receiver', value: row.receiver ? `${row.receiver as string} from ${(row.sender as string) ?? '?'}` : 'not running' },
    );
    return;
  }
  s.source = 'pg_stat_replication, pg_replication_slots (on the primary)';
  const replicas = await rowsOf(
    client,
    `SELECT pid, nullif(application_name, '') AS application, host(client_addr) AS client, state, sync_state,
            extract(epoch FROM write_lag)::float8 AS write_lag, extract(epoch FROM flush_lag)::float8 AS flush_lag,
            extract(epoch FROM replay_lag)::float8 AS replay_lag, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS behind
       FROM pg_stat_replication
      ORDER BY application_name, pid`,
  );
  s.facts.push({ label: 'role', value: 'primary' });
  if (replicas.length === 0) {
    s.facts.push({ label: 'replicas', value: 'no replicas (pg_stat_replication is empty)' });
  } else {
    s.tables.push({
      title: 'replicas',
      columns: [
        { key: 'application', header: 'replica' },
        { key: 'client', header: 'address' },
        { key: 'state', header: 'state' },
        { key: 'sync_state', header: 'sync' },
        { key: 'write_lag', header: 'write lag', kind: 'seconds' },
        { key: 'flush_lag', header: 'flush lag', kind: 'seconds' },
        { key: 'replay_lag', header: 'replay lag', kind: 'seconds' },
        { key: 'behind', header: 'WAL behind', kind: 'bytes' },
      ],
      rows: replicas,
      empty: '',
    });
  }
  const slots = await rowsOf(
    client,
    `SELECT slot_name AS name, slot_type AS type, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS retained
       FROM pg_replication_slots ORDER BY slot_name`,
  );
  if (slots.length > 0) {
    s.tables.push({
      title: 'replication slots (an inactive slot keeps WAL on the primary until it is dropped)',
      columns: [
        { key: 'name', header: 'slot' },
        { key: 'type', header: 'type' },
        { key: 'active', header: 'active' },
        { key: 'retained', header: 'WAL retained', kind: 'bytes' },
      ],
      rows: slots,
      empty: '',
    });
  } else {
    s.facts.push({ label: 'replication slots', value: 'none' });
  }
}

async function viewAge(client: pg.Client, s: Section): Promise<void> {
  s.source = 'analytics_refreshes (analytics-svc\'s refresh log: a success is logged in the refresh\'s own transaction), pg_matviews';
  const present = await oneRow(
    client,
    `SELECT to_regclass('analytics_refreshes') IS NOT NULL AS log, m.ispopulated AS populated, pg_total_relation_size(to_regclass('patient_analytics')) AS size
       FROM (SELECT 1) AS one LEFT JOIN pg_matviews AS m ON m.matviewname = 'patient_analytics'`,
  );
  if (!present.log) {
    throw new Error('no analytics_refreshes table in this database (is it the services\' database, migrated?)');
  }
  const last = await oneRow(
    client,
    `SELECT refresh_id, trigger, started_at, extract(epoch FROM now() - started_at)::float8 AS age,
            extract(epoch FROM duration)::float8 AS took, row_count, replica
       FROM analytics_refreshes WHERE status = 'SUCCEEDED' ORDER BY refresh_id DESC LIMIT 1`,
  );
  const failures = await oneRow(
    client,
    `SELECT count(*) AS count, max(finished_at) AS last_at,
            (SELECT error FROM analytics_refreshes WHERE status = 'FAILED' ORDER BY refresh_id DESC LIMIT 1) AS last_error
       FROM analytics_refreshes
      WHERE status = 'FAILED' AND refresh_id > coalesce((SELECT max(refresh_id) FROM analytics_refreshes WHERE status = 'SUCCEEDED'), 0)`,
  );
  s.facts.push({ label: 'view', value: `patient_analytics, ${present.populated === null ? 'missing' : present.populated ? 'populated' : 'NOT populated'}` });
  if (present.size !== null && present.size !== undefined) {
    s.facts.push({ label: 'size', value: present.size, kind: 'bytes' });
  }
  if (last.refresh_id === undefined) {
    s.facts.push({ label: 'view age', value: 'unknown: no successful refresh logged' });
  } else {
    s.facts.push(
      {
        label: 'view age',
        value: last.age,
        kind: 'seconds',
        note: `(as of ${(last.started_at as Date).toISOString()}: refresh #${last.refresh_id as number}, ${last.trigger as string}, ${last.row_count as number} rows, took ${formatSeconds(Number(last.took))}, by ${last.replica as string})`,
      },
    );
  }
  s.facts.push({
    label: 'failed since',
    value:
      Number(failures.count) > 0
        ? `${failures.count as number} attempts, the last ${format(failures.last_at, 'ago')}: ${failures.last_error as string}`
        : 'none',
  });
}

async function auditBacklog(client: pg.Client, s: Section): Promise<void> {
  s.source = 'audit_chain_pending (committed events the sealer has not chained yet), audit_chain_head';
  const row = await oneRow(
    client,
    `SELECT (SELECT count(*) FROM audit_chain_pending) AS pending,
            (SELECT extract(epoch FROM now() - min(e."timestamp"))::float8
               FROM audit_events AS e WHERE e.event_seq = (SELECT min(event_seq) FROM audit_chain_pending)) AS oldest,
            (SELECT sequence_number FROM audit_chain_head) AS chained`,
  );
  s.facts.push(
    { label: 'pending events', value: row.pending, kind: 'int' },
    row.oldest === null || row.oldest === undefined
      ? { label: 'oldest pending', value: 'none' }
      : { label: 'oldest pending', value: row.oldest, kind: 'seconds', note: 'old' },
    { label: 'chain length', value: row.chained, kind: 'int', note: 'events sealed' },
  );
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

function parseInfo(text: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) {
      fields[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  return fields;
}

function redisTls(): ConnectionOptions {
  const read = (name: string) => (process.env[name] ? readFileSync(process.env[name] as string) : undefined);
  const [ca, cert, key] = [read('REDIS_TLS_CA_FILE'), read('REDIS_TLS_CERT_FILE'), read('REDIS_TLS_KEY_FILE')];
  return { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}) };
}

/** The nodes to ask: REDIS_URL, or every seed node of REDIS_CLUSTER_NODES. */
function redisTargets(): { label: string; open: () => Redis }[] {
  const common = { lazyConnect: true, connectTimeout: 3_000, commandTimeout: 5_000, maxRetriesPerRequest: 0, retryStrategy: () => null };
  const url = settingOf('REDIS_URL');
  if (url) {
    const secure = url.startsWith('rediss:');
    return [{ label: new URL(url).host, open: () => new Redis(url, { ...common, ...(secure ? { tls: redisTls() } : {}) }) }];
  }
  const nodes = (process.env.REDIS_CLUSTER_NODES ?? '').split(',').map((node) => node.trim()).filter(Boolean);
  const secure = process.env.REDIS_CLUSTER_TLS === 'on';
  return nodes.map((node) => {
    const [host, port] = node.split(':');
    return { label: node, open: () => new Redis({ ...common, host: host || '127.0.0.1', port: Number(port || 6379), ...(secure ? { tls: redisTls() } : {}) }) };
  });
}

async function redisNode(target: { label: string; open: () => Redis }, s: Section, many: boolean): Promise<void> {
  const redis = target.open();
  // The socket's own error (ECONNREFUSED, a TLS refusal), which connect()'s rejection does not carry.
  let socketError: unknown;
  redis.on('error', (error) => {
    socketError ??= error;
  });
  try {
    await redis.connect();
    const info = parseInfo(await redis.info('all'));
    const hits = Number(info.keyspace_hits ?? 0);
    const misses = Number(info.keyspace_misses ?? 0);
    const maxmemory = Number(info.maxmemory ?? 0);
    const keys = Object.entries(info)
      .filter(([name]) => /^db\d+$/.test(name))
      .map(([name, value]) => `${name} ${/keys=(\d+)/.exec(value)?.[1] ?? '?'}`);
    const label = (name: string) => (many ? `${target.label} ${name}` : name);
    s.facts.push(
      { label: label('server'), value: `Redis ${info.redis_version ?? '?'} at ${target.label}, ${info.role ?? '?'}, up ${formatSeconds(Number(info.uptime_in_seconds ?? 0))}` },
      { label: label('used memory'), value: `${info.used_memory_human ?? '?'} (peak ${info.used_memory_peak_human ?? '?'}, RSS ${info.used_memory_rss_human ?? '?'})` },
      {
        label: label('maxmemory'),
        value:
          maxmemory > 0
            ? `${info.maxmemory_human ?? formatBytes(maxmemory)} (${((Number(info.used_memory ?? 0) / maxmemory) * 100).toFixed(1)}% used), policy ${info.maxmemory_policy ?? '?'}`
            : `no limit (0), policy ${info.maxmemory_policy ?? '?'}`,
      },
      { label: label('fragmentation ratio'), value: info.mem_fragmentation_ratio ?? '?' },
      {
        label: label('hit rate'),
        value: hits + misses > 0 ? `${((hits / (hits + misses)) * 100).toFixed(1)}%` : 'n/a (no lookups yet)',
        note: `(keyspace_hits ${hits}, keyspace_misses ${misses})`,
      },
      { label: label('evicted / expired keys'), value: `${info.evicted_keys ?? '?'} / ${info.expired_keys ?? '?'}` },
      { label: label('connected clients'), value: `${info.connected_clients ?? '?'} (blocked ${info.blocked_clients ?? '?'}, rejected connections ${info.rejected_connections ?? '?'})` },
      { label: label('keys'), value: keys.length > 0 ? keys.join(', ') : 'none' },
    );
  } catch (error) {
    const message = `${target.label}: ${reason(socketError ?? error)}`;
    s.error = s.error ? `${s.error}; ${message}` : message;
  } finally {
    redis.disconnect();
  }
}

async function redisSection(s: Section): Promise<void> {
  s.source = 'INFO (memory, stats, clients, keyspace); hit rate = keyspace_hits / (hits + misses) since the server started or CONFIG RESETSTAT';
  const targets = redisTargets();
  if (targets.length === 0) {
    const memory = settingOf('STATE_STORE') === 'memory';
    throw new Error(memory ? 'no Redis: the services run with STATE_STORE=memory' : 'no REDIS_URL or REDIS_CLUSTER_NODES set');
  }
  for (const target of targets) {
    await redisNode(target, s, targets.length > 1);
  }
}

// ---------------------------------------------------------------------------
// The report.
// ---------------------------------------------------------------------------

const databaseUrl = settingOf('DATABASE_URL');
if (!databaseUrl && !settingOf('REDIS_URL') && !process.env.REDIS_CLUSTER_NODES) {
  process.stderr.write(
    `ops:report: set DATABASE_URL (a role that may read the statistics views: a superuser, or one granted pg_monitor) and REDIS_URL, or run \`npm start\` first${Object.keys(readDevEnvironment()).length > 0 ? '' : ' (no .data/dev-env.json)'}\n`,
  );
  process.exit(78);
}

const started = new Date();
let client: pg.Client | undefined;
let connectError: string | undefined;
let target = 'none configured';
if (databaseUrl) {
  try {
    const connection = databaseConnection(databaseUrl);
    const parsed = new URL(connection.url);
    target = `${parsed.hostname}:${parsed.port || 5432}${parsed.pathname}`;
    client = new pg.Client({
      connectionString: connection.url,
      ssl: connection.ssl,
      application_name: 'ops:report',
      connectionTimeoutMillis: 5_000,
      // Never stuck behind a lock or a slow view: the section says so and the report goes on.
      statement_timeout: 15_000,
      lock_timeout: 3_000,
      types: numberTypes,
    } as pg.ClientConfig);
    client.on('error', () => {
      // Reported by the query that fails.
    });
    await client.connect();
    const { rows } = await client.query<{ now: Date }>('SELECT now() AS now');
    serverNow = rows[0]?.now.getTime() ?? Date.now();
  } catch (error) {
    connectError = `cannot connect to PostgreSQL at ${target}: ${reason(error)}`;
    await client?.end().catch(() => {});
    client = undefined;
  }
}

/** A PostgreSQL section, or its reason for being empty. */
const postgresSection = (title: string, fill: (client: pg.Client, s: Section) => Promise<void>) =>
  section(title, async (s) => {
    if (!client) {
      throw new Error(connectError ?? 'no DATABASE_URL set');
    }
    await fill(client, s);
  });

const sections: Section[] = [];
for (const [title, fill] of [
  ['PostgreSQL', serverFacts],
  ['Slow queries', slowQueries],
  ['Table and index sizes', sizes],
  ['Bloat (dead tuples)', bloat],
  ['Unused indexes', unusedIndexes],
  ['Cache hit ratios', cacheHits],
  ['Long transactions', longTransactions],
  ['Locks: blocked and blocking', locks],
  ['Replication', replication],
  ['Materialized view age (analytics)', viewAge],
  ['Audit chain backlog', auditBacklog],
] as const) {
  sections.push(await postgresSection(title, fill));
}
sections.push(await section('Redis', redisSection));
await client?.end().catch(() => {});

process.stdout.write(
  values.json
    ? renderJson(sections, { generatedAt: started.toISOString(), postgres: target, options: { top, longAfterSeconds: longAfter } })
    : renderText(sections, [`ops:report ${started.toISOString()}  PostgreSQL ${target}  (--top ${top}, --long-after ${longAfter} s)`]),
);
process.exitCode = 0;
