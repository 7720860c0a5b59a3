import { auditV1 } from '@clinical/contracts';
import { InvalidArgumentError } from '@clinical/errors';
import { FieldValidator, fitPage, pageSizeOf, type Cursor, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { ACTION_NAMES, EVENT_TYPE_NAMES, storedEntityTypes, toAuditEventMessage } from './auditEventRecord.js';
import { selectAuditEvents, type AuditEventFilters } from './auditEventQueries.js';
import { recordTrailRead } from './trailAccessEvents.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ENTITY_TYPE = /^[a-z][a-z0-9_]*$/;
const MICROS = /^-?\d{1,19}$/;
const PAGE_SIZE = { defaultSize: 100, maxSize: 1_000 };
const METHOD = 'ListAuditEvents';

/** Checks the filters and returns them normalized; violations accumulate in `v`. */
function filtersOf(v: FieldValidator, request: auditV1.ListAuditEventsRequest): AuditEventFilters {
  v.string('entity_type', request.entityType, {
    max: 50,
    pattern: ENTITY_TYPE,
    patternDescription: 'must be a table name such as patients, documents, vital_signs, mcp_context or audit_events',
  });
  v.string('entity_id', request.entityId, { max: 200 });
  v.uuid('patient_id', request.patientId, false);
  v.string('user_id', request.userId, { max: 200 });
  const action = ACTION_NAMES.get(request.action);
  if (request.action !== auditV1.AuditAction.AUDIT_ACTION_UNSPECIFIED && !action) {
    v.add('action', 'has an unsupported value');
  }
  const eventType = EVENT_TYPE_NAMES.get(request.eventType);
  if (request.eventType !== auditV1.AuditEventType.AUDIT_EVENT_TYPE_UNSPECIFIED && !eventType) {
    v.add('event_type', 'has an unsupported value');
  }
  const start = v.instant('start_time', request.startTime);
  const end = v.instant('end_time', request.endTime);
  if (start && end && end.getTime() <= start.getTime()) {
    v.add('end_time', 'must be after start_time');
  }
  return {
    entityTypes: request.entityType ? storedEntityTypes(request.entityType) : undefined,
    entityId: request.entityId || undefined,
    entityIdIsUuid: UUID.test(request.entityId),
    patientId: request.patientId ? request.patientId.toLowerCase() : undefined,
    userId: request.userId || undefined,
    action,
    eventType,
    start: request.startTime,
    end: request.endTime,
  };
}

/**
 * The position a decoded page token carries: [occurred_micros, event_id].
 * The kit's codec has checked the token's seal; its shape is checked here
 * again before it reaches SQL.
 */
function eventCursorOf(parts: Cursor): { occurredMicros: string; eventId: string } {
  const [occurredMicros, eventId, ...rest] = parts;
  if (rest.length === 0 && typeof occurredMicros === 'string' && MICROS.test(occurredMicros) && typeof eventId === 'string' && UUID.test(eventId)) {
    return { occurredMicros, eventId };
  }
  throw new InvalidArgumentError({ field: 'page_token', description: 'is not a token of this request' });
}

/**
 * Most bytes an event's fields other than its payload and reason take encoded:
 * ids, keys and names of at most 200 characters (4 bytes each at most),
 * addresses, hashes and times.
 */
const EVENT_FIELDS_BOUND_BYTES = 4_096;

/**
 * ListAuditEvents: keyset pages of the events the caller may see, newest
 * first, and an access event for each patient whose events it returns. A
 * page holds at most page_size events and ends early before the event that
 * would take its payloads beyond PAGE_PAYLOAD_BUDGET_BYTES (a page always
 * holds one event at least): next_page_token, not the page's length, tells
 * whether more follow.
 */
export function listAuditEventsHandler(runtime: ServiceRuntime) {
  return async function listAuditEvents(
    request: auditV1.ListAuditEventsRequest,
    context: HandlerContext,
  ): Promise<auditV1.ListAuditEventsResponse> {
    const v = new FieldValidator();
    const filters = filtersOf(v, request);
    let pageSize = PAGE_SIZE.defaultSize;
    try {
      pageSize = pageSizeOf(request.pageSize, PAGE_SIZE);
    } catch {
      v.add('page_size', 'must not be negative');
    }
    v.throwIfInvalid();
    // A token is bound to the method and to every field of the request but the page's size and token.
    const tokenFilters = { method: METHOD, request: { ...request, pageSize: 0, pageToken: '' } };
    const cursorParts = runtime.pageTokens.decode(request.pageToken, tokenFilters);
    const cursor = cursorParts ? eventCursorOf(cursorParts) : undefined;

    // The page ends at pageSize events or at the payload budget, whichever comes first.
    const { rows: fetched, more } = await selectAuditEvents(runtime.pool, context.principal, filters, cursor, pageSize);
    // And before the event that would take the response past what a client accepts: a payload
    // (jsonb text) takes at most 4 times its bytes as a protobuf Struct, so most pages need no measuring.
    const page = fitPage(fetched, toAuditEventMessage, auditV1.AuditEvent, {
      upperBound: (row) => 4 * row.payload_bytes + EVENT_FIELDS_BOUND_BYTES + 3 * (row.reason?.length ?? 0),
    });
    const last = page.rows[page.rows.length - 1];
    recordTrailRead(runtime, context, page.rows);
    return {
      events: page.messages,
      nextPageToken: (more || page.trimmed) && last ? runtime.pageTokens.encode([last.occurred_micros, last.event_id], tokenFilters) : '',
    };
  };
}
