import { sql, type CommonQueryMethods } from '@clinical/db';
import { z } from 'zod';
import { sessionRow, type SessionRow } from './sessionRecord.js';

const COLUMNS = sql.fragment`
  sid, sub, created_at, expires_at, last_seen_at, revoked_at, revoked_by,
  (extract(epoch FROM created_at) * 1000000)::bigint::text AS created_micros
`;

/** A user's sessions, newest first, after the keyset position `after` ([created_micros, sid]); one more than `limit` tells of a next page. */
export async function selectSessions(
  db: CommonQueryMethods,
  user: string,
  after: readonly [string, string] | undefined,
  limit: number,
): Promise<readonly SessionRow[]> {
  return db.any(sql.type(sessionRow)`
    SELECT ${COLUMNS} FROM sessions
     WHERE sub = ${user}
       ${after ? sql.fragment`AND ((extract(epoch FROM created_at) * 1000000)::bigint, sid) < (${after[0]}::bigint, ${after[1]})` : sql.fragment``}
     ORDER BY created_at DESC, sid DESC
     LIMIT ${limit + 1}
  `);
}

/** Ends a session unless it has ended already, and returns it as it now stands; null when there is no such session. */
export async function revokeOne(db: CommonQueryMethods, sid: string, revokedBy: string, reason: string): Promise<SessionRow | null> {
  await db.query(sql.type(z.object({}))`
    UPDATE sessions SET revoked_at = now(), revoked_by = ${revokedBy}, revoke_reason = ${reason}
     WHERE sid = ${sid} AND revoked_at IS NULL
  `);
  return db.maybeOne(sql.type(sessionRow)`SELECT ${COLUMNS} FROM sessions WHERE sid = ${sid}`);
}

/**
 * The sessions of a user that are ended and have not run out: those a cached
 * "live" could still let in, if the cache was not told of their end (Redis
 * away when they were revoked, back later with its data).
 */
export async function endedSessionsOf(db: CommonQueryMethods, user: string): Promise<readonly string[]> {
  return db.anyFirst(sql.type(z.object({ sid: z.string() }))`
    SELECT sid FROM sessions WHERE sub = ${user} AND revoked_at IS NOT NULL AND expires_at > now()
  `);
}

/** Ends every session of a user not ended yet; returns their ids. */
export async function revokeAllOf(db: CommonQueryMethods, user: string, revokedBy: string, reason: string): Promise<readonly string[]> {
  return db.anyFirst(sql.type(z.object({ sid: z.string() }))`
    UPDATE sessions SET revoked_at = now(), revoked_by = ${revokedBy}, revoke_reason = ${reason}
     WHERE sub = ${user} AND revoked_at IS NULL
    RETURNING sid
  `);
}
