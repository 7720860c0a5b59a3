import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { InvalidArgumentError } from '@clinical/errors';
import { z } from 'zod';

/** Where a page ends: the last (site_id, protocol_id) it returned. */
export interface PageCursor {
  readonly siteId: string;
  readonly protocolId: string;
}

/** Encodes and checks ListSiteAnalytics page tokens. */
export interface PageTokenCodec {
  /** The token of the page after `cursor`, bound to the request's filters. */
  encode(cursor: PageCursor, filters: unknown): string;
  /**
   * The cursor of a token from `encode`.
   * @throws InvalidArgumentError (field page_token) when the token was not
   *   made by this service, was altered, or was made for other filters.
   */
  decode(token: string, filters: unknown): PageCursor;
}

const payload = z.object({
  v: z.literal(1),
  s: z.string().max(200),
  p: z.string().max(200),
  f: z.string(),
});

const MAC_BYTES = 16;

const filtersDigest = (filters: unknown) => createHash('sha256').update(JSON.stringify(filters)).digest('base64url').slice(0, 22);

const invalid = (description: string) => new InvalidArgumentError({ field: 'page_token', description });

/**
 * Page tokens are `base64url(JSON).base64url(MAC)`: opaque to callers, and
 * refused when forged, altered or reused with other filters. They carry no
 * authority (every page is filtered by the caller's own sites), so the MAC
 * key is derived from the token-verification key the replicas already share.
 */
export function createPageTokenCodec(keyMaterial: string): PageTokenCodec {
  const key = Buffer.from(hkdfSync('sha256', keyMaterial, 'clinical.analytics.v1', 'ListSiteAnalytics page token', 32));
  const mac = (body: string) => createHmac('sha256', key).update(body).digest().subarray(0, MAC_BYTES);

  return {
    encode(cursor, filters) {
      const body = Buffer.from(
        JSON.stringify({ v: 1, s: cursor.siteId, p: cursor.protocolId, f: filtersDigest(filters) }),
      ).toString('base64url');
      return `${body}.${mac(body).toString('base64url')}`;
    },
    decode(token, filters) {
      const [body, signature, ...rest] = token.split('.');
      if (!body || !signature || rest.length > 0 || token.length > 2_000) {
        throw invalid('is not a page token of this method');
      }
      const given = Buffer.from(signature, 'base64url');
      const expected = mac(body);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        throw invalid('is not a page token of this method');
      }
      let parsed: z.infer<typeof payload>;
      try {
        parsed = payload.parse(JSON.parse(Buffer.from(body, 'base64url').toString('utf8')));
      } catch {
        throw invalid('is not a page token of this method');
      }
      if (parsed.f !== filtersDigest(filters)) {
        throw invalid('was issued for a request with other site_id or protocol_id');
      }
      return { siteId: parsed.s, protocolId: parsed.p };
    },
  };
}
