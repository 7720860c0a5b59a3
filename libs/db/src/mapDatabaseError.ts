import {
  AbortedError,
  AlreadyExistsError,
  type DomainError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  UnavailableError,
} from '@clinical/errors';
import {
  BackendTerminatedError,
  BackendTerminatedUnexpectedlyError,
  CheckIntegrityConstraintViolationError,
  ConnectionError,
  ForeignKeyIntegrityConstraintViolationError,
  IdleTransactionTimeoutError,
  InvalidInputError,
  NotFoundError as SlonikNotFoundError,
  NotNullIntegrityConstraintViolationError,
  SlonikError,
  StatementCancelledError,
  StatementTimeoutError,
  UniqueIntegrityConstraintViolationError,
} from 'slonik';

interface PgErrorFields {
  code?: string;
  detail?: string;
  constraint?: string;
  column?: string;
}

function pgFields(error: unknown): PgErrorFields {
  let current: unknown = error;
  // Slonik wraps the driver's error; the SQLSTATE lives on the innermost cause.
  for (let depth = 0; depth < 4 && current instanceof Error; depth += 1) {
    const fields = current as Error & PgErrorFields;
    if (typeof fields.code === 'string' && /^[0-9A-Z]{5}$/.test(fields.code)) {
      return fields;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return {};
}

/**
 * Node's codes for a connection to the database that broke or could not be
 * made. The driver hands them on as they are (`read ECONNRESET`, with no
 * SQLSTATE): a server that died without closing its sessions (an immediate
 * shutdown, a crash, a failover), or a network path that reset them.
 */
const CONNECTION_ERRNO = new Set(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** Whether `error` (or a cause of it) is the driver reporting its connection broken at the socket. */
function connectionBroken(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current instanceof Error; depth += 1) {
    const { code } = current as Error & { code?: unknown };
    if (typeof code === 'string' && CONNECTION_ERRNO.has(code)) {
      return true;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/** Column names from a key violation's detail: `Key (a, b)=(...) ...` gives [a, b]; values are dropped. */
function keyColumns(detail: string | undefined): string[] {
  const match = /^Key \(([^)]+)\)=/.exec(detail ?? '');
  return match?.[1] ? match[1].split(',').map((column) => column.trim()) : [];
}

/**
 * Turns a database failure into the domain error a caller should see, or
 * returns undefined when it is a server fault. Messages name columns and
 * constraints, never values.
 */
export function mapDatabaseError(error: unknown): DomainError | undefined {
  if (!(error instanceof SlonikError)) {
    const { code } = pgFields(error);
    if (code) {
      return mapSqlState(code, error);
    }
    // Slonik passes a socket's failure through unwrapped: the database is away, not the request at fault.
    return connectionBroken(error) ? new UnavailableError('a connection to the database was lost, retry later', { cause: error }) : undefined;
  }
  const fields = pgFields(error);
  if (error instanceof UniqueIntegrityConstraintViolationError) {
    const columns = keyColumns(fields.detail);
    const field = columns.join(', ') || error.constraint || 'key';
    return new AlreadyExistsError(`a record with this ${field} already exists`, columns[0], { cause: error });
  }
  if (error instanceof ForeignKeyIntegrityConstraintViolationError) {
    const columns = keyColumns(fields.detail);
    return new FailedPreconditionError(`referenced ${columns.join(', ') || 'record'} does not exist or is still referenced`, {
      cause: error,
    });
  }
  if (error instanceof CheckIntegrityConstraintViolationError) {
    return new InvalidArgumentError(
      { field: error.column ?? error.constraint ?? 'request', description: `violates ${error.constraint ?? 'a check'}` },
      { cause: error },
    );
  }
  if (error instanceof NotNullIntegrityConstraintViolationError) {
    return new InvalidArgumentError(
      { field: error.column ?? fields.column ?? 'request', description: 'is required' },
      { cause: error },
    );
  }
  if (error instanceof InvalidInputError) {
    // A value Slonik cannot send, e.g. NaN or Infinity inside a JSON document (JSON has no such numbers).
    return new InvalidArgumentError(
      { field: 'request', description: 'holds a value that cannot be stored (for example NaN or Infinity in a JSON document)' },
      { cause: error },
    );
  }
  if (error instanceof SlonikNotFoundError) {
    return new NotFoundError('record', '', { cause: error });
  }
  if (
    error instanceof ConnectionError ||
    error instanceof BackendTerminatedError ||
    error instanceof BackendTerminatedUnexpectedlyError ||
    error instanceof IdleTransactionTimeoutError
  ) {
    return new UnavailableError('database unavailable, retry later', { cause: error });
  }
  if (error instanceof StatementTimeoutError || error instanceof StatementCancelledError) {
    return new UnavailableError('database statement timed out, retry later', { cause: error });
  }
  return fields.code ? mapSqlState(fields.code, error) : undefined;
}

function mapSqlState(code: string, cause: unknown): DomainError | undefined {
  const { detail, column, constraint } = pgFields(cause);
  // Class 23 from the driver directly (a plain pg client, as COPY uses).
  if (code === '23505') {
    const columns = keyColumns(detail);
    return new AlreadyExistsError(`a record with this ${columns.join(', ') || constraint || 'key'} already exists`, columns[0], { cause });
  }
  if (code === '23503') {
    return new FailedPreconditionError('a referenced record does not exist or is still referenced', { cause });
  }
  if (code === '23514' || code === '23502') {
    return new InvalidArgumentError(
      { field: column ?? constraint ?? 'request', description: code === '23502' ? 'is required' : `violates ${constraint ?? 'a check'}` },
      { cause },
    );
  }
  // 57014: statement timeout or cancellation.
  if (code === '57014') {
    return new UnavailableError('database statement timed out, retry later', { cause });
  }
  // Class 22: data exceptions (values out of range, bad text representation).
  if (code.startsWith('22')) {
    return new InvalidArgumentError({ field: 'request', description: `value rejected by the database (SQLSTATE ${code})` }, { cause });
  }
  // Class 40: transaction rollback (serialization failure, deadlock) after Slonik's retries.
  if (code.startsWith('40')) {
    return new AbortedError('concurrent modification, retry the request', { cause });
  }
  // Class 54: program limits (a JSON document nested too deep, too many columns).
  if (code.startsWith('54')) {
    return new InvalidArgumentError({ field: 'request', description: `exceeds a database limit (SQLSTATE ${code})` }, { cause });
  }
  // 25006 read_only_sql_transaction: a write reached a server that takes none (default_transaction_read_only set
  // by an operator, a primary demoted or a hot standby during a failover). Nothing was written, and the request is
  // not at fault: the same request succeeds once the database takes writes again, so the caller is told to retry
  // (with the same request_id), as for a database that is down. FAILED_PRECONDITION would tell it not to retry
  // until it has changed something itself, and INTERNAL would page someone for an operator's planned state.
  if (code === '25006') {
    return new UnavailableError('database is read-only for now, retry later', { cause });
  }
  if (code === '42501') {
    return new PermissionDeniedError('operation not permitted', { cause });
  }
  // Class 08 (connection), 53 (insufficient resources), 57P (operator intervention).
  if (code.startsWith('08') || code.startsWith('53') || code.startsWith('57P')) {
    return new UnavailableError('database unavailable, retry later', { cause });
  }
  return undefined;
}
