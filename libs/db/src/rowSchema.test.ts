import { describe, expect, it } from 'vitest';
import { z } from 'zod/v4';
import { rowSchema } from './rowSchema.js';

describe('rowSchema', () => {
  const schema = rowSchema(z.object({ id: z.guid(), note: z.string().nullable() }));

  it('passes a valid row through, without the fields the schema does not name', () => {
    const row = { id: '11111111-1111-1111-1111-111111111111', note: null, extra: 1 };
    expect(schema.parse(row)).toEqual({ id: row.id, note: null });
  });

  it('refuses an invalid row with the path of each bad field', () => {
    const result = schema.safeParse({ id: 'not-a-guid', note: 5 });
    expect(result.success).toBe(false);
    expect(result.error?.issues.map((issue) => issue.path)).toEqual([['id'], ['note']]);
  });
});
