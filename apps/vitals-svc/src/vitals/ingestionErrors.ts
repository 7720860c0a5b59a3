import { mapDatabaseError } from '@clinical/db';
import {
  AbortedError,
  DomainError,
  FailedPreconditionError,
  InvalidArgumentError,
  UnavailableError,
} from '@clinical/errors';
import { isAbortError } from 'abort-controller-x';

const CONNECTION_LOST = /Connection terminated|connection error|Connection ended|not queryable|ECONNRESET|ECONNREFUSED|EPIPE/i;

/**
 * The domain error of a failure on a plain `pg` ingestion connection. Slonik
 * errors are classified by `mapDatabaseError`; the driver's own errors carry
 * only a SQLSTATE (or none, when the connection broke), so the cases COPY can
 * meet are named here. Messages carry no values. Anything else passes through
 * unchanged (a server fault).
 */
export function ingestionError(error: unknown): unknown {
  if (error instanceof DomainError || isAbortError(error)) {
    return error;
  }
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code)) {
    if (code === '57014' || code.startsWith('57P') || code.startsWith('08') || code.startsWith('53') || code === '25P03') {
      return new UnavailableError('database statement cancelled or timed out, retry later', { cause: error });
    }
    if (code.startsWith('40') || code === '23505' || code === '23503') {
      return new AbortedError('concurrent change, retry the request', { cause: error });
    }
    if (code === '23514' || code === '23502' || code.startsWith('22')) {
      return new InvalidArgumentError({ field: 'readings', description: `rejected by the database (SQLSTATE ${code})` }, { cause: error });
    }
    if (code === '55P03') {
      return new FailedPreconditionError('a lock could not be taken, retry later', { cause: error });
    }
    return mapDatabaseError(error) ?? error;
  }
  if (error instanceof Error && CONNECTION_LOST.test(error.message)) {
    return new UnavailableError('database connection lost, retry later', { cause: error });
  }
  return error;
}
