import { describe, expect, it } from 'vitest';
import { countWithinBudget } from './responseBudget.js';

describe('countWithinBudget', () => {
  it('keeps the items whose encoded sizes, with their field prefixes, fit the budget', () => {
    const sizes = [100, 100, 100];
    // Each element costs 1 tag byte + 1 length byte + its bytes: 102.
    expect(countWithinBudget(sizes, (size) => size, { budget: 306 })).toBe(3);
    expect(countWithinBudget(sizes, (size) => size, { budget: 305 })).toBe(2);
    // Lengths of 128 bytes and more take a longer prefix.
    expect(countWithinBudget([200, 200], (size) => size, { budget: 405 })).toBe(1);
  });

  it('keeps the first item even when it alone is over the budget', () => {
    expect(countWithinBudget([1_000, 1_000], (size) => size, { budget: 10 })).toBe(1);
    expect(countWithinBudget([], () => 1_000, { budget: 10 })).toBe(0);
  });

  it('encodes nothing when the upper bounds already fit, and encodes when they do not', () => {
    let encoded = 0;
    const encodedLength = () => {
      encoded += 1;
      return 10;
    };
    expect(countWithinBudget([1, 2, 3, 4, 5], encodedLength, { budget: 100, upperBound: () => 18 })).toBe(5);
    expect(encoded).toBe(0);
    expect(countWithinBudget([1, 2, 3, 4, 5], encodedLength, { budget: 100, upperBound: () => 50 })).toBe(5);
    expect(encoded).toBe(5);
  });
});
