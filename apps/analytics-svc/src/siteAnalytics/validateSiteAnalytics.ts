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

/** Rows per ListSiteAnalytics page: the contract's default and cap. */
export const PAGE_SIZE = { default: 100, max: 1_000 } as const;

/** The effective page size: 0 means the default, more than the cap means the cap; negative is refused. */
export function checkPageSize(v: FieldValidator, pageSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < 0) {
    v.add('page_size', 'must not be negative');
    return PAGE_SIZE.default;
  }
  return pageSize === 0 ? PAGE_SIZE.default : Math.min(pageSize, PAGE_SIZE.max);
}
