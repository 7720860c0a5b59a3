/**
 * What code on plain `pg` needs of this library, without Slonik: the whole
 * index loads Slonik and its dependencies (about 11 MB resident), which a
 * worker thread that only reads by COPY has no use for.
 */
export { copyOutRows, uuidText, type CopyRowHandler } from './copyOutRows.js';
export { databaseConnection, type DatabaseConnection } from './connectionTls.js';
