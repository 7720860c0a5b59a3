import type { sessionV1 } from '@clinical/contracts';
import { InvalidArgumentError } from '@clinical/errors';
import { FieldValidator, pageSizeOf, type Cursor, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { selectSessions } from './sessionQueries.js';
import { toSessionMessage, USER } from './sessionRecord.js';

const PAGE_SIZE = { defaultSize: 50, maxSize: 500 };

/** The keyset position a decoded page token carries (sealed by the kit's codec; its shape checked again before SQL). */
function positionOf(cursor: Cursor): [string, string] {
  const [micros, sid, ...rest] = cursor;
  if (rest.length === 0 && typeof micros === 'string' && /^-?\d+$/.test(micros) && typeof sid === 'string') {
    return [micros, sid];
  }
  throw new InvalidArgumentError({ field: 'page_token', description: 'is not a token of this request' });
}

/** ListSessions: a user's sessions, newest first, in keyset pages (admin). */
export function listSessionsHandler(runtime: ServiceRuntime) {
  return async function listSessions(request: sessionV1.ListSessionsRequest, _context: HandlerContext): Promise<sessionV1.ListSessionsResponse> {
    const v = new FieldValidator();
    v.string('user', request.user, USER);
    if (request.pageSize < 0) {
      v.add('page_size', 'must not be negative');
    }
    v.throwIfInvalid();
    const pageSize = pageSizeOf(request.pageSize, PAGE_SIZE);
    const filters = { method: 'ListSessions', user: request.user };
    const cursor = runtime.pageTokens.decode(request.pageToken, filters);
    const rows = await selectSessions(runtime.pool, request.user, cursor ? positionOf(cursor) : undefined, pageSize);
    const page = rows.slice(0, pageSize);
    const last = page[page.length - 1];
    return {
      sessions: page.map(toSessionMessage),
      nextPageToken: rows.length > pageSize && last ? runtime.pageTokens.encode([last.created_micros, last.sid], filters) : '',
    };
  };
}
