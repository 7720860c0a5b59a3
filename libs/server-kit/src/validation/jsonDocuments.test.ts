import { describe, expect, it } from 'vitest';
import { FieldValidator } from './fieldValidator.js';
import { jsonDocumentProblem } from './jsonDocuments.js';

const nested = (depth: number): unknown => (depth === 1 ? 'leaf' : { next: nested(depth - 1) });

describe('jsonDocumentProblem', () => {
  it('accepts what jsonb stores', () => {
    expect(jsonDocumentProblem({ a: [1, -2.5, 'text', null, true, { b: 'ü😀' }] }, 8)).toBeUndefined();
    expect(jsonDocumentProblem(nested(8), 8)).toBeUndefined();
  });

  it.each([
    ['NaN', { a: Number.NaN }, /NaN or infinite/],
    ['Infinity in a list', { a: [1, [Number.POSITIVE_INFINITY]] }, /NaN or infinite/],
    ['NUL in a value', { a: 'x\u0000' }, /NUL/],
    ['NUL in a key', { ['k\u0000']: 1 }, /NUL/],
    ['a lone high surrogate', { a: 'x\uD800' }, /surrogates/],
    ['a lone low surrogate', ['\uDC00y'], /surrogates/],
    ['nesting one level too deep', nested(9), /deeper than 8/],
  ])('refuses %s, without quoting it', (_, value, problem) => {
    const description = jsonDocumentProblem(value, 8);
    expect(description).toMatch(problem);
    expect(description).not.toMatch(/x|k|y/);
  });
});

describe('FieldValidator.jsonDocument', () => {
  it('names the field, and returns the JSON text of a valid document', () => {
    const v = new FieldValidator();
    expect(v.jsonDocument('content', { a: 1 }, { maxBytes: 100, maxDepth: 4 })).toBe('{"a":1}');
    expect(v.jsonDocument('metadata', undefined, { maxBytes: 100, maxDepth: 4 })).toBeUndefined();
    expect(v.valid).toBe(true);
    expect(v.jsonDocument('content', { a: Number.NaN }, { maxBytes: 100, maxDepth: 4 })).toBeUndefined();
    expect(v.jsonDocument('metadata', { a: 'x'.repeat(100) }, { maxBytes: 100, maxDepth: 4 })).toBeUndefined();
    expect(() => v.throwIfInvalid()).toThrow(
      expect.objectContaining({
        violations: [
          { field: 'content', description: 'must not contain NaN or infinite numbers' },
          { field: 'metadata', description: 'must be at most 100 bytes as JSON' },
        ],
      }),
    );
  });
});
