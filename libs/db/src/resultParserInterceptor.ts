import { SchemaValidationError, type Interceptor, type QueryResultRow } from 'slonik';

/**
 * Validates each row of a typed query against its zod schema. Slonik only
 * carries the schema; without this interceptor `sql.type` is unchecked.
 */
export const resultParserInterceptor: Interceptor = {
  name: 'result-parser',
  transformRow(queryContext, query, row) {
    const { resultParser } = queryContext;
    if (!resultParser) {
      return row;
    }
    const parsed = resultParser.safeParse(row);
    if (!parsed.success) {
      throw new SchemaValidationError(query, row, parsed.error.issues);
    }
    return parsed.data as QueryResultRow;
  },
};
