import { createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '@clinical/errors';

/** Where a page ends: the last reading returned, by its exact measurement_time (UTC, microseconds, as text) and id. */
export interface PageCursor {
  readonly measurementTime: string;
  readonly vitalId: string;
}

const VERSION = 1;
const MAX_TOKEN_LENGTH = 512;
const MAC_BYTES = 16;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// to_char(measurement_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), e.g. '2024-05-01 10:00:00.123456'.
const TIMESTAMP_TEXT = /^\d{4,}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/;

const malformed = () => new InvalidArgumentError({ field: 'page_token', description: 'is not a page token issued by this service' });

/**
 * Opaque page tokens for keyset pagination: base64url of a small JSON cursor
 * and a fingerprint of the request's filters, followed by an HMAC of both.
 * A forged or altered token fails the HMAC; a token replayed with other
 * filters fails the fingerprint. Both are INVALID_ARGUMENT, naming page_token.
 */
export class PageTokenCodec {
  private constructor(private readonly key: Buffer) {}

  /**
   * A codec keyed by `secret` (an operator-set key, or one derived from a
   * shared secret so that every replica accepts the others' tokens).
   */
  static fromSecret(secret: string): PageTokenCodec {
    return new PageTokenCodec(Buffer.from(hkdfSync('sha256', secret, 'clinical.vitals.v1', 'ListVitals page tokens', 32)));
  }

  /** A codec with a random key: tokens only work on this process. */
  static ephemeral(): PageTokenCodec {
    return new PageTokenCodec(randomBytes(32));
  }

  /** Fingerprint of the filters a token belongs to. */
  private static fingerprint(filters: string): string {
    return createHash('sha256').update(filters).digest().subarray(0, 12).toString('base64url');
  }

  private mac(payload: string): Buffer {
    return createHmac('sha256', this.key).update(payload).digest().subarray(0, MAC_BYTES);
  }

  encode(cursor: PageCursor, filters: string): string {
    const payload = Buffer.from(
      JSON.stringify({ v: VERSION, t: cursor.measurementTime, id: cursor.vitalId, f: PageTokenCodec.fingerprint(filters) }),
    ).toString('base64url');
    return `${payload}.${this.mac(payload).toString('base64url')}`;
  }

  /** @throws InvalidArgumentError (field page_token) when the token is forged, altered, or was issued for other filters. */
  decode(token: string, filters: string): PageCursor {
    if (token.length > MAX_TOKEN_LENGTH) {
      throw malformed();
    }
    const [payload, mac, ...rest] = token.split('.');
    if (!payload || !mac || rest.length > 0) {
      throw malformed();
    }
    const expected = this.mac(payload);
    const given = Buffer.from(mac, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw malformed();
    }
    let decoded: unknown;
    try {
      decoded = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
    } catch {
      throw malformed();
    }
    const { v, t, id, f } = (decoded ?? {}) as Record<string, unknown>;
    if (v !== VERSION || typeof t !== 'string' || !TIMESTAMP_TEXT.test(t) || typeof id !== 'string' || !UUID.test(id)) {
      throw malformed();
    }
    if (f !== PageTokenCodec.fingerprint(filters)) {
      throw new InvalidArgumentError({
        field: 'page_token',
        description: 'was issued for a request with another patient_id, start_time or end_time',
      });
    }
    return { measurementTime: t, vitalId: id };
  }
}
