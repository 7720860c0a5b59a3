import { InvalidArgumentError } from '@clinical/errors';
import { describe, expect, it } from 'vitest';
import { createPageTokenCodec, pageSizeOf } from './pageTokens.js';

const codec = createPageTokenCodec('a-page-token-secret-of-at-least-32-chars', 'patient-svc');
const filters = { method: 'ListThings', siteId: 'S1', since: new Date('2024-05-01T00:00:00Z') };

/** The InvalidArgumentError `run` throws (failing when it throws nothing or something else). */
function refusal(run: () => unknown): InvalidArgumentError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidArgumentError);
    return error as InvalidArgumentError;
  }
  throw new Error('expected an InvalidArgumentError');
}

describe('page tokens', () => {
  it('round-trip a cursor for the same filters', () => {
    const cursor = ['2024-05-01 10:00:00.123456', 'Site ü/"1".x', 42, true, null];
    const token = codec.encode(cursor, filters);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    // Encrypted: nothing of the cursor is readable in the token.
    expect(Buffer.from(token, 'base64url').toString('latin1')).not.toContain('Site');
    expect(codec.decode(token, { ...filters })).toEqual(cursor);
    // Every replica sealing with the same secret accepts the others' tokens.
    expect(createPageTokenCodec('a-page-token-secret-of-at-least-32-chars', 'patient-svc').decode(token, filters)).toEqual(cursor);
  });

  it('treats an empty token as the first page', () => {
    expect(codec.decode('', filters)).toBeUndefined();
  });

  it('refuses a tampered or forged token, naming page_token', () => {
    const token = codec.encode(['S1', 'P1'], filters);
    const bytes = Buffer.from(token, 'base64url');
    const flipped = (index: number) => {
      const copy = Buffer.from(bytes);
      copy[index] = (copy[index] ?? 0) ^ 0x01;
      return copy.toString('base64url');
    };
    const otherSecret = createPageTokenCodec('another-secret-of-another-deployment!!', 'patient-svc').encode(['S1', 'P1'], filters);
    // Same secret and filters, another service's token.
    const otherService = createPageTokenCodec('a-page-token-secret-of-at-least-32-chars', 'analytics-svc').encode(['S1', 'P1'], filters);
    for (const bad of [
      flipped(0),
      flipped(20),
      flipped(bytes.length - 1),
      token.slice(0, -4),
      `${token}.x`,
      `${token}==`,
      '.',
      'garbage',
      '\u0000',
      Buffer.from(JSON.stringify({ c: ['S1', 'P1'], f: 'x' })).toString('base64url'),
      otherSecret,
      otherService,
    ]) {
      const error = refusal(() => codec.decode(bad, filters));
      expect(error.violations.map((violation) => violation.field)).toEqual(['page_token']);
    }
  });

  it('refuses a token reused with other filters, naming page_token', () => {
    const token = codec.encode(['S1', 'P1'], filters);
    for (const other of [{ ...filters, siteId: 'S2' }, { ...filters, method: 'ListOtherThings' }, { ...filters, since: undefined }, undefined]) {
      const error = refusal(() => codec.decode(token, other));
      expect(error.violations.map((violation) => violation.field)).toEqual(['page_token']);
      expect(error.violations[0]?.description).toMatch(/other filters/);
    }
  });
});

describe('pageSizeOf', () => {
  const options = { defaultSize: 100, maxSize: 1_000 };

  it('uses the default for 0 and caps at the maximum', () => {
    expect(pageSizeOf(0, options)).toBe(100);
    expect(pageSizeOf(37, options)).toBe(37);
    expect(pageSizeOf(5_000, options)).toBe(1_000);
  });

  it('refuses a negative page size, naming page_size', () => {
    const error = refusal(() => pageSizeOf(-1, options));
    expect(error.violations.map((violation) => violation.field)).toEqual(['page_size']);
  });
});
