import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '@clinical/errors';

/**
 * Opaque, signed keyset page tokens. A token carries the last row's sort key
 * and a MAC over it, the method and the request's filters: a token that was
 * altered, forged, or sent back with other filters is INVALID_ARGUMENT.
 */
export interface PageTokenCodec {
  encode(method: string, filters: unknown, cursor: readonly string[]): string;
  /** @throws InvalidArgumentError (field page_token) for a token this request may not use. */
  decode(method: string, filters: unknown, token: string): string[];
}

const VERSION = 1;
const MAC_BYTES = 16;

export function createPageTokenCodec(secret: string): PageTokenCodec {
  const key = createHash('sha256').update(`clinical.audit page tokens\0${secret}`).digest();
  const mac = (method: string, filters: unknown, body: Buffer) =>
    createHmac('sha256', key)
      .update(method)
      .update('\0')
      .update(JSON.stringify(filters))
      .update('\0')
      .update(body)
      .digest()
      .subarray(0, MAC_BYTES);
  const invalid = () =>
    new InvalidArgumentError({
      field: 'page_token',
      description: 'is not a token of this request: it was altered, or the other fields of the request changed',
    });

  return {
    encode(method, filters, cursor) {
      const body = Buffer.from(JSON.stringify([VERSION, ...cursor]), 'utf8');
      return Buffer.concat([body, mac(method, filters, body)]).toString('base64url');
    },
    decode(method, filters, token) {
      if (token.length > 1_000 || !/^[A-Za-z0-9_-]+$/.test(token)) {
        throw invalid();
      }
      const bytes = Buffer.from(token, 'base64url');
      if (bytes.length <= MAC_BYTES) {
        throw invalid();
      }
      const body = bytes.subarray(0, bytes.length - MAC_BYTES);
      if (!timingSafeEqual(bytes.subarray(bytes.length - MAC_BYTES), mac(method, filters, body))) {
        throw invalid();
      }
      const parsed: unknown = JSON.parse(body.toString('utf8'));
      if (!Array.isArray(parsed) || parsed[0] !== VERSION || !parsed.slice(1).every((part) => typeof part === 'string')) {
        throw invalid();
      }
      return parsed.slice(1) as string[];
    },
  };
}

/** page_size as the contract defines it: 0 means the default, above the maximum means the maximum. */
export function pageSizeOf(requested: number, defaults: { default: number; max: number }): number {
  if (requested < 0 || !Number.isInteger(requested)) {
    throw new InvalidArgumentError({ field: 'page_size', description: 'must not be negative' });
  }
  return requested === 0 ? defaults.default : Math.min(requested, defaults.max);
}
