/** A SQLSTATE (`23505`, `42P01`): five characters, digits among them. */
const SQLSTATE = /^(?=.*\d)[0-9A-Z]{5}$/;
/** A system or TLS error code (`ECONNREFUSED`, `SELF_SIGNED_CERT_IN_CHAIN`): names what failed, never quotes data. */
const SYSTEM_CODE = /^[A-Z][A-Z0-9_]{3,}$/;

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
    if (typeof code === 'string' && SQLSTATE.test(code)) {
      return `${name} (SQLSTATE ${code})`;
    }
    if (typeof code === 'string' && SYSTEM_CODE.test(code)) {
      return `${name} (${code})`;
    }
    current = (current as { cause?: unknown }).cause;
  }
  return name;
}
