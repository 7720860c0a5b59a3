import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '@clinical/errors';

/** A position in a keyset-ordered list: the sort key values of the last row returned. */
export type Cursor = readonly (string | number | boolean | null)[];

/**
 * Opaque page tokens. A token carries the keyset cursor and a fingerprint of
 * the filters it was issued for, sealed with an HMAC: a token edited by hand,
 * issued by another deployment, or reused with other filters is refused.
 */
export interface PageTokenCodec {
  encode(cursor: Cursor, filters: unknown): string;
  /**
   * The cursor of `token`, or undefined for an empty token (the first page).
   * @throws InvalidArgumentError naming `page_token`.
   */
  decode(token: string, filters: unknown): Cursor | undefined;
}

const fingerprint = (filters: unknown) =>
  createHash('sha256').update(JSON.stringify(filters ?? null)).digest('base64url').slice(0, 22);

export function createPageTokenCodec(secret: string): PageTokenCodec {
  const key = createHash('sha256').update(`page-tokens\0${secret}`).digest();
  const seal = (payload: string) => createHmac('sha256', key).update(payload).digest().subarray(0, 16);
  return {
    encode(cursor, filters) {
      const payload = Buffer.from(JSON.stringify({ c: cursor, f: fingerprint(filters) })).toString('base64url');
      return `${payload}.${seal(payload).toString('base64url')}`;
    },
    decode(token, filters) {
      if (token === '') {
        return undefined;
      }
      const [payload, mac, extra] = token.split('.');
      const expected = payload ? seal(payload) : undefined;
      const given = mac ? Buffer.from(mac, 'base64url') : undefined;
      if (extra !== undefined || !expected || !given || given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw new InvalidArgumentError({ field: 'page_token', description: 'is not a page token this service issued' });
      }
      const decoded = JSON.parse(Buffer.from(payload as string, 'base64url').toString()) as { c: Cursor; f: string };
      if (decoded.f !== fingerprint(filters)) {
        throw new InvalidArgumentError({
          field: 'page_token',
          description: 'was issued for a request with other filters; repeat the same filters or start over',
        });
      }
      return decoded.c;
    },
  };
}

/**
 * The page size to use: `requested`, or `defaultSize` for 0, capped at `maxSize`.
 * @throws InvalidArgumentError for a negative size.
 */
export function pageSizeOf(requested: number, options: { defaultSize: number; maxSize: number }): number {
  if (requested < 0) {
    throw new InvalidArgumentError({ field: 'page_size', description: 'must not be negative' });
  }
  return requested === 0 ? options.defaultSize : Math.min(requested, options.maxSize);
}
