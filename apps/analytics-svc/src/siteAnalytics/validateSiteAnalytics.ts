import type { FieldValidator } from '@clinical/server-kit';

/** Site and protocol ids are varchar(50) in the schema; plain SQL may have stored any printable text. */
const ID_RULE = {
  max: 50,
  pattern: /^[^\p{Cc}]*$/u,
  patternDescription: 'must not contain control characters',
};

/** Checks a site or protocol id of a request; empty passes unless required. */
export function checkKeyField(v: FieldValidator, field: string, value: string, required: boolean): void {
  v.string(field, value, { ...ID_RULE, required });
}

/** Rows per ListSiteAnalytics page: the contract's default and cap (for the kit's pageSizeOf). */
export const PAGE_SIZE = { defaultSize: 100, maxSize: 1_000 } as const;
