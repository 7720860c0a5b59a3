import { createHash } from 'node:crypto';
import { InvalidArgumentError } from '@clinical/errors';
import { sql, type DatabaseTransactionConnection } from 'slonik';
import { z } from 'zod';

/** Identifies one logical request: who asked, which method, and the caller's request_id. */
export interface IdempotencyKey {
  /** Method and caller, e.g. `PatientService/CreatePatient:alice`. */
  readonly scope: string;
  /** The caller's request_id (a UUID). */
  readonly requestId: string;
  /** The request's bytes without its request_id: a reused id with another request is refused. */
  readonly requestBytes: Uint8Array;
}

/** Turns the first response into bytes for retries (a ts-proto message's encode/decode). */
export interface ResponseCodec<T> {
  encode(response: T): Uint8Array;
  decode(bytes: Uint8Array): T;
}

const storedRequest = z.object({ request_hash: z.instanceof(Buffer), response: z.instanceof(Buffer) });

/**
 * Runs `perform` once per idempotency key, inside the caller's transaction.
 * The key row is claimed first: a concurrent retry blocks on it until the
 * first transaction ends, then reads the committed response; if the first
 * rolled back, the retry performs the work itself. Without a key, it just runs.
 * @throws InvalidArgumentError when the request_id was used for a different request.
 */
export async function runIdempotent<T>(
  transaction: DatabaseTransactionConnection,
  key: IdempotencyKey | undefined,
  codec: ResponseCodec<T>,
  perform: () => Promise<T>,
): Promise<T> {
  if (!key) {
    return perform();
  }
  const requestHash = createHash('sha256').update(key.requestBytes).digest();
  const claimed = await transaction.maybeOneFirst(sql.type(z.object({ claimed: z.boolean() }))`
    INSERT INTO idempotent_requests (scope, request_id, request_hash, response)
    VALUES (${key.scope}, ${key.requestId}, ${sql.binary(requestHash)}, ''::bytea)
    ON CONFLICT (scope, request_id) DO NOTHING
    RETURNING true AS claimed
  `);
  if (!claimed) {
    const stored = await transaction.one(sql.type(storedRequest)`
      SELECT request_hash, response FROM idempotent_requests
       WHERE scope = ${key.scope} AND request_id = ${key.requestId}
    `);
    if (!stored.request_hash.equals(requestHash)) {
      throw new InvalidArgumentError({ field: 'request_id', description: 'was already used for a different request' });
    }
    return codec.decode(stored.response);
  }
  const response = await perform();
  await transaction.query(sql.unsafe`
    UPDATE idempotent_requests SET response = ${sql.binary(Buffer.from(codec.encode(response)))}
     WHERE scope = ${key.scope} AND request_id = ${key.requestId}
  `);
  return response;
}
