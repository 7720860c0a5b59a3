/**
 * The authorization matrix: every method of every service against every
 * role, rendered from the method policies (@clinical/method-policies) as a
 * markdown table, and read back from the published copy in SECURITY.md.
 * `npm run access:matrix` writes it there; a test fails when the published
 * table is not the one the policies make, and drives every cell of it.
 */
import { SERVED_METHODS } from '@clinical/method-policies';
import { ROLES, type Role } from '@clinical/server-kit';

export const MATRIX_START = '<!-- access-matrix:start (npm run access:matrix writes this table) -->';
export const MATRIX_END = '<!-- access-matrix:end -->';
const ALLOWED = '✓';
const DENIED = '·';

/** One published row: a method, where it is served, and the roles allowed to call it. */
export interface MatrixRow {
  /** `/clinical.patient.v1.PatientService/GetPatient` */
  readonly path: string;
  readonly server: string;
  readonly allowed: ReadonlySet<Role>;
}

/** The matrix as markdown, from the policies the services enforce. */
export function renderAccessMatrix(): string {
  const header = `| method | served by | ${ROLES.join(' | ')} | cost |`;
  const rule = `|---|---|${ROLES.map(() => ':-:').join('|')}|--:|`;
  const rows = SERVED_METHODS.map(
    ({ service, method, server, policy }) =>
      `| \`${service}/${method}\` | ${server} | ${ROLES.map((role) => (policy.roles.includes(role) ? ALLOWED : DENIED)).join(' | ')} | ${policy.cost} |`,
  );
  return [header, rule, ...rows].join('\n');
}

/** The table between the markers of `document`, or undefined when there is none. */
export function publishedTable(document: string): string | undefined {
  const start = document.indexOf(MATRIX_START);
  const end = document.indexOf(MATRIX_END);
  return start < 0 || end < start ? undefined : document.slice(start + MATRIX_START.length, end).trim();
}

/** `document` with its table replaced by `table`. */
export function withTable(document: string, table: string): string {
  const start = document.indexOf(MATRIX_START);
  const end = document.indexOf(MATRIX_END);
  if (start < 0 || end < start) {
    throw new Error(`the document has no ${MATRIX_START} … ${MATRIX_END} section`);
  }
  return `${document.slice(0, start + MATRIX_START.length)}\n${table}\n${document.slice(end)}`;
}

/** The rows of a published table, read as a reader reads them. */
export function parseAccessMatrix(table: string): MatrixRow[] {
  const [header, , ...rows] = table.split('\n').map((line) =>
    line
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.trim()),
  );
  const roles = (header ?? []).slice(2, -1) as Role[];
  return rows.map(([method = '', server = '', ...cells]) => ({
    path: `/${method.replaceAll('`', '')}`,
    server,
    allowed: new Set(roles.filter((_, index) => cells[index] === ALLOWED)),
  }));
}
