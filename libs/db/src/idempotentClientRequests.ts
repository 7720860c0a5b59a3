import { createHash } from 'node:crypto';
import { AbortedError } from '@clinical/errors';
import type pg from 'pg';

/** A caller's request_id within the scope of one method and caller (see `IdempotencyKey`). */
export interface RequestIdentity {
  /** Method and caller, e.g. `VitalsService/StreamVitals:alice`. */
  readonly scope: string;
  /** The caller's request_id (a UUID). */
  readonly requestId: string;
}

/** The first response to a request_id, as committed, with the hash of the request that produced it. */
export interface StoredResponse {
  readonly requestHash: Buffer;
  readonly response: Buffer;
}

/** A 64-bit advisory-lock key of the identity (a collision costs a spurious wait, never a wrong answer). */
function lockKey(identity: RequestIdentity): string {
  return createHash('sha256').update(`${identity.scope}\u0000${identity.requestId}`).digest().readBigInt64BE(0).toString();
}

/**
 * Claims a request_id inside the client's transaction, for requests whose
 * bytes are only known at their end (a client stream): takes a transaction
 * advisory lock on it, then returns the response committed by an earlier
 * request with the same id, if there is one. The lock is held until the
 * transaction ends, so a concurrent request with the same id either waits
 * for it (`ifBusy: 'wait'`) or is refused at once (`ifBusy: 'abort'`).
 * Store the response with `saveIdempotentResponse` before committing.
 * @throws AbortedError when `ifBusy` is 'abort' and another transaction holds the id.
 */
export async function claimRequestId(
  client: pg.ClientBase,
  identity: RequestIdentity,
  ifBusy: 'wait' | 'abort',
): Promise<StoredResponse | undefined> {
  const key = lockKey(identity);
  if (ifBusy === 'wait') {
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [key]);
  } else {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1::bigint) AS locked', [key]);
    if (!rows[0]?.locked) {
      throw new AbortedError('a request with this request_id is still in progress; retry once it has ended');
    }
  }
  const { rows } = await client.query<{ request_hash: Buffer; response: Buffer }>(
    'SELECT request_hash, response FROM idempotent_requests WHERE scope = $1 AND request_id = $2',
    [identity.scope, identity.requestId],
  );
  const stored = rows[0];
  return stored ? { requestHash: stored.request_hash, response: stored.response } : undefined;
}

/** Records the response to a claimed request_id, in the same transaction as the work it answers. */
export async function saveIdempotentResponse(
  client: pg.ClientBase,
  identity: RequestIdentity,
  requestHash: Uint8Array,
  response: Uint8Array,
): Promise<void> {
  await client.query('INSERT INTO idempotent_requests (scope, request_id, request_hash, response) VALUES ($1, $2, $3, $4)', [
    identity.scope,
    identity.requestId,
    Buffer.from(requestHash),
    Buffer.from(response),
  ]);
}
