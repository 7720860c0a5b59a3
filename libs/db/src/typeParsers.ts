import type { DriverTypeParser } from 'slonik';

/**
 * How column values arrive in JavaScript. int8 stays a string (no precision
 * loss; the contracts carry int64 as strings), dates stay 'YYYY-MM-DD'
 * (a civil date has no time zone), timestamps become Date.
 */
export const typeParsers: readonly DriverTypeParser[] = [
  { name: 'int8', parse: (value) => value },
  { name: 'date', parse: (value) => value },
  { name: 'timestamptz', parse: (value) => new Date(value) },
  { name: 'timestamp', parse: (value) => new Date(`${value}Z`) },
  { name: 'numeric', parse: (value) => Number.parseFloat(value) },
];
