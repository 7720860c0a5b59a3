import { InvalidArgumentError } from '@clinical/errors';
import { describe, expect, it } from 'vitest';
import { createPageTokenCodec } from './pageToken.js';

const codec = createPageTokenCodec('a-key-of-this-deployment-of-32-characters');
const filters = { siteId: '', protocolId: 'P1' };

function refusal(decode: () => unknown): InvalidArgumentError {
  try {
    decode();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return error as InvalidArgumentError;
  }
  throw new Error('the token was accepted');
}

describe('page tokens', () => {
  it('round-trip a cursor, whatever characters its ids hold', () => {
    const cursor = { siteId: 'Site ü/"1".x', protocolId: 'P.1' };
    const token = codec.encode(cursor, filters);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(codec.decode(token, filters)).toEqual(cursor);
  });

  it('refuse a token of another key, an altered one and garbage, naming page_token', () => {
    const token = codec.encode({ siteId: 'S1', protocolId: 'P1' }, filters);
    const other = createPageTokenCodec('another-key-of-another-deployment!!').encode({ siteId: 'S1', protocolId: 'P1' }, filters);
    const [body, mac] = token.split('.') as [string, string];
    const altered = `${Buffer.from(Buffer.from(body, 'base64url').toString().replace('S1', 'S9')).toString('base64url')}.${mac}`;
    for (const bad of [other, altered, 'x', '.', `${body}.`, `${token}.${mac}`, 'é'.repeat(3_000)]) {
      expect(refusal(() => codec.decode(bad, filters)).violations[0]?.field).toBe('page_token');
    }
  });

  it('refuse a token reused with other filters', () => {
    const token = codec.encode({ siteId: 'S1', protocolId: 'P1' }, filters);
    expect(refusal(() => codec.decode(token, { siteId: 'S1', protocolId: 'P1' })).message).toMatch(/other site_id or protocol_id/);
  });
});
