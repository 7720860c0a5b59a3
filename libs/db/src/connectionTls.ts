import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';

/** Thrown when a database URL's TLS parameters cannot be honoured; names the parameter. */
export class DatabaseUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatabaseUrlError';
  }
}

/** libpq's TLS parameters, which this module reads and removes from the URL. */
const TLS_PARAMETERS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'] as const;

/** A PostgreSQL connection: the URL without its TLS parameters, and node's TLS options for them (false: plaintext). */
export interface DatabaseConnection {
  readonly url: string;
  readonly ssl: false | ConnectionOptions;
}

function readPem(parameter: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new DatabaseUrlError(`${parameter}: cannot read ${file}`);
  }
}

/**
 * Reads libpq's TLS parameters from a postgres:// URL, with libpq's meanings:
 * - `sslmode=disable` (or none): plaintext;
 * - `require`: TLS, the server's certificate unchecked (checked against `sslrootcert` when one is given,
 *   as libpq does); `no-verify`, node-postgres's name for it, never checks;
 * - `verify-ca`: TLS, the certificate must chain to `sslrootcert` (or the system's CAs);
 * - `verify-full`: as verify-ca, and it must name the host.
 * `sslcert` and `sslkey` present a client certificate. `prefer` and `allow`, which fall back to plaintext
 * on their own, are refused: say `disable` or `require`.
 * @throws DatabaseUrlError naming the parameter.
 */
export function databaseConnection(databaseUrl: string): DatabaseConnection {
  const url = new URL(databaseUrl);
  const parameters = Object.fromEntries(TLS_PARAMETERS.map((name) => [name, url.searchParams.get(name) ?? undefined]));
  for (const name of TLS_PARAMETERS) {
    url.searchParams.delete(name);
  }
  const mode = parameters.sslmode ?? 'disable';
  if (mode === 'disable') {
    return { url: url.toString(), ssl: false };
  }
  if (!['require', 'no-verify', 'verify-ca', 'verify-full'].includes(mode)) {
    throw new DatabaseUrlError(`sslmode: ${mode} is not supported; use disable, require, verify-ca or verify-full`);
  }
  if (Boolean(parameters.sslcert) !== Boolean(parameters.sslkey)) {
    throw new DatabaseUrlError('sslcert, sslkey: give both, or neither');
  }
  const ca = parameters.sslrootcert ? readPem('sslrootcert', parameters.sslrootcert) : undefined;
  const verify = mode === 'verify-ca' || mode === 'verify-full' || (mode === 'require' && ca !== undefined);
  const ssl: ConnectionOptions = {
    rejectUnauthorized: verify,
    ...(ca ? { ca } : {}),
    ...(parameters.sslcert && parameters.sslkey
      ? { cert: readPem('sslcert', parameters.sslcert), key: readPem('sslkey', parameters.sslkey) }
      : {}),
    // The host name is checked only by verify-full (and then it is TLS's own check, with SNI).
    ...(mode === 'verify-full' ? { servername: url.hostname } : { checkServerIdentity: () => undefined }),
  };
  return { url: url.toString(), ssl };
}

/** TLS failures that mean the configuration is wrong (a CA that does not match, a host the certificate does not name). */
const CERTIFICATE_REFUSED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Why a connection attempt says the database's TLS configuration is wrong,
 * or undefined when it failed for another reason (the server is down, say).
 */
export function tlsMisconfiguration(error: unknown): string | undefined {
  for (let current = error, depth = 0; current instanceof Error && depth < 5; depth += 1) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && CERTIFICATE_REFUSED.has(code)) {
      return `the server's certificate was refused (${code}): check sslrootcert and the host name`;
    }
    if (/does not support SSL connections/i.test(current.message)) {
      return 'the server does not accept TLS: check sslmode';
    }
    if (/no pg_hba\.conf entry .* no encryption/i.test(current.message)) {
      return 'the server accepts TLS connections only: set sslmode=verify-full with sslrootcert';
    }
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
