/** A SQLSTATE (`23505`) or a system error code (`ECONNREFUSED`): names what failed, never quotes data. */
const ERROR_CODE = /^([0-9A-Z]{5}|E[A-Z]+)$/;

/**
 * What failed, for a log line or the refresh log: the error's class and the
 * first SQLSTATE or system error code along its causes, as
 * `ConnectionError (ECONNREFUSED)`. Never the message: a database error's
 * message may quote the values it refused, and those may be PHI.
 */
export function describeError(error: unknown): string {
  const name = error instanceof Error ? error.name : 'UnknownError';
  let current: unknown = error;
  for (let depth = 0; depth < 5 && current instanceof Error; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && ERROR_CODE.test(code)) {
      return `${name} (${/^E/.test(code) ? code : `SQLSTATE ${code}`})`;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return name;
}
