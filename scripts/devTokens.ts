/**
 * Development tokens, as `npm run token` makes them and `npm run seed` uses
 * them: an HS256 token signed with JWT_SECRET, and its session opened in
 * PostgreSQL (audited; the services check it on every call). JWT_SECRET and
 * DATABASE_URL come from the environment, else from what `npm start`
 * recorded (.data/dev-env.json).
 */
import { createDatabasePool } from '@clinical/db';
import { mintToken, openSession, ROLES, type Role } from '@clinical/server-kit';
import { settingOf } from './devEnvironment.js';

export interface DevTokenRequest {
  readonly sub: string;
  readonly roles: readonly Role[];
  readonly sites: readonly string[] | '*';
  readonly ttlSeconds: number;
}

/** A problem that stops the script, with the exit code it should end with (sysexits). */
export class DevTokenError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

/** What is missing to mint tokens (JWT_SECRET, DATABASE_URL); empty when nothing is. */
export function devTokenProblems(): string[] {
  return [
    ...(settingOf('JWT_SECRET') ? [] : ['JWT_SECRET is not set (run `npm start` first, or export it)']),
    ...(settingOf('DATABASE_URL') ? [] : ['DATABASE_URL is not set (run `npm start` first, or export it)']),
  ];
}

/** The names in `roles` that are not roles. */
export function unknownRoles(roles: readonly string[]): string[] {
  return roles.filter((role) => !(ROLES as readonly string[]).includes(role));
}

/**
 * Mints one token per request and opens their sessions, over one database
 * connection.
 * @throws DevTokenError when a setting is missing (78) or the database does not answer (69).
 */
export async function mintDevTokens(requests: readonly DevTokenRequest[]): Promise<string[]> {
  const problems = devTokenProblems();
  if (problems.length > 0) {
    throw new DevTokenError(problems.join('\n'), 78);
  }
  const secret = settingOf('JWT_SECRET') as string;
  const databaseUrl = settingOf('DATABASE_URL') as string;
  let pool;
  try {
    pool = await createDatabasePool({ connectionUri: databaseUrl, maximumPoolSize: 1, connectionTimeoutMs: 3_000 });
  } catch (error) {
    throw new DevTokenError(`the database is not answering (${(error as Error).name}); is \`npm start\` running?`, 69);
  }
  try {
    const tokens: string[] = [];
    for (const request of requests) {
      const { token, sid } = await mintToken({
        secret,
        issuer: process.env.JWT_ISSUER ?? 'clinical-platform',
        audience: process.env.JWT_AUDIENCE ?? 'clinical-data-services',
        sub: request.sub,
        roles: [...request.roles],
        sites: request.sites,
        ttlSeconds: request.ttlSeconds,
      });
      await openSession(pool, { sid, sub: request.sub, expiresAt: new Date(Date.now() + request.ttlSeconds * 1_000) });
      tokens.push(token);
    }
    return tokens;
  } finally {
    await pool.end();
  }
}
