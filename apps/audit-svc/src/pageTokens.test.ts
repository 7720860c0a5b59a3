import { InvalidArgumentError } from '@clinical/errors';
import { describe, expect, it } from 'vitest';
import { createPageTokenCodec, pageSizeOf } from './pageTokens.js';

const codec = createPageTokenCodec('a-secret-that-is-long-enough-for-tokens');
const filters = { patientId: 'p-1', action: 2 };

describe('page tokens', () => {
  it('round-trips a cursor for the same method and filters', () => {
    const token = codec.encode('ListAuditEvents', filters, ['1730000000000000', 'e-1']);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(codec.decode('ListAuditEvents', { ...filters }, token)).toEqual(['1730000000000000', 'e-1']);
  });

  it('refuses a token sent with other filters, to another method, altered or forged', () => {
    const token = codec.encode('ListAuditEvents', filters, ['1', 'e']);
    const refused = (run: () => unknown) => {
      expect(run).toThrow(InvalidArgumentError);
      try {
        run();
      } catch (error) {
        expect((error as InvalidArgumentError).violations[0]?.field).toBe('page_token');
      }
    };
    refused(() => codec.decode('ListAuditEvents', { ...filters, action: 3 }, token));
    refused(() => codec.decode('ListAgentContexts', filters, token));
    const bytes = Buffer.from(token, 'base64url');
    bytes[2] = bytes[2]! ^ 1;
    refused(() => codec.decode('ListAuditEvents', filters, bytes.toString('base64url')));
    refused(() => codec.decode('ListAuditEvents', filters, Buffer.from('[1,"2","x"]').toString('base64url')));
    refused(() => codec.decode('ListAuditEvents', filters, 'not a token!'));
    refused(() => createPageTokenCodec('another-secret-that-is-long-enough!!').decode('ListAuditEvents', filters, token));
  });

  it('applies the page size rules', () => {
    expect(pageSizeOf(0, { default: 100, max: 1000 })).toBe(100);
    expect(pageSizeOf(5000, { default: 100, max: 1000 })).toBe(1000);
    expect(() => pageSizeOf(-1, { default: 100, max: 1000 })).toThrow(InvalidArgumentError);
  });
});
