import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { InvalidArgumentError } from '@clinical/errors';
import { withMapEntriesInKeyOrder } from '../messages/canonicalForm.js';

/** A position in a keyset-ordered list: the sort key values of the last row returned. */
export type Cursor = readonly (string | number | boolean | null)[];

/**
 * Opaque page tokens. A token carries the keyset cursor (which may hold a
 * patient's id or dates) and a fingerprint of the filters it was issued for,
 * encrypted and authenticated with AES-256-GCM: callers and the proxies that
 * log URLs and headers cannot read it, and a token edited by hand, issued by
 * another deployment, or reused with other filters is refused.
 */
export interface PageTokenCodec {
  encode(cursor: Cursor, filters: unknown): string;
  /**
   * The cursor of `token`, or undefined for an empty token (the first page).
   * @throws InvalidArgumentError naming `page_token`.
   */
  decode(token: string, filters: unknown): Cursor | undefined;
}

/** The filters' digest; JSON-document filters (Structs) count by content, whatever their entries' wire order. */
const fingerprint = (filters: unknown) =>
  createHash('sha256').update(JSON.stringify(withMapEntriesInKeyOrder(filters ?? null))).digest('base64url').slice(0, 22);

/**
 * A codec whose tokens only `scope` (the service's name) accepts: every
 * service derives its key from the same secret, and two services' filters
 * may look alike.
 */
export function createPageTokenCodec(secret: string, scope: string): PageTokenCodec {
  const key = createHash('sha256').update(`page-tokens\0${scope}\0${secret}`).digest();
  const refuse = () =>
    new InvalidArgumentError({ field: 'page_token', description: 'is not a page token this service issued' });
  return {
    encode(cursor, filters) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const sealed = Buffer.concat([cipher.update(JSON.stringify({ c: cursor, f: fingerprint(filters) })), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
    },
    decode(token, filters) {
      if (token === '') {
        return undefined;
      }
      const bytes = Buffer.from(token, 'base64url');
      if (bytes.length < 29 || bytes.toString('base64url') !== token) {
        throw refuse();
      }
      let decoded: { c: Cursor; f: string };
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, bytes.subarray(0, 12));
        decipher.setAuthTag(bytes.subarray(12, 28));
        decoded = JSON.parse(Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString()) as {
          c: Cursor;
          f: string;
        };
      } catch {
        throw refuse();
      }
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
