import type { sessionV1 } from '@clinical/contracts';
import { rowSchema } from '@clinical/db';
import { z } from 'zod/v4';

/** A sessions row as the service selects it, with its keyset position. */
export const sessionFields = z.object({
  sid: z.string(),
  sub: z.string(),
  created_at: z.date(),
  expires_at: z.date(),
  last_seen_at: z.date(),
  revoked_at: z.date().nullable(),
  revoked_by: z.string().nullable(),
  /** created_at in microseconds since the epoch, as text: the page cursor's first key. */
  created_micros: z.string(),
});
export const sessionRow = rowSchema(sessionFields);
export type SessionRow = z.infer<typeof sessionFields>;

export function toSessionMessage(row: SessionRow): sessionV1.Session {
  return {
    sessionId: row.sid,
    user: row.sub,
    createTime: row.created_at,
    expireTime: row.expires_at,
    lastSeenTime: row.last_seen_at,
    revokeTime: row.revoked_at ?? undefined,
    revokedBy: row.revoked_by ?? '',
  };
}

/** The limits of the fields these requests take. */
export const USER = { max: 200, required: true } as const;
export const REASON = { max: 500, required: true } as const;
export const SESSION_ID = { max: 100, required: true } as const;
