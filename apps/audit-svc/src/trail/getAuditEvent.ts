import type { auditV1 } from '@clinical/contracts';
import { NotFoundError } from '@clinical/errors';
import { FieldValidator, type HandlerContext, type ServiceRuntime } from '@clinical/server-kit';
import { toAuditEventMessage } from './auditEventRecord.js';
import { selectAuditEvent } from './auditEventQueries.js';
import { recordTrailRead } from './trailAccessEvents.js';

/** GetAuditEvent: one event; one about a patient outside the caller's sites is NOT_FOUND. */
export function getAuditEventHandler(runtime: ServiceRuntime) {
  return async function getAuditEvent(
    request: auditV1.GetAuditEventRequest,
    context: HandlerContext,
  ): Promise<auditV1.GetAuditEventResponse> {
    const v = new FieldValidator();
    v.uuid('event_id', request.eventId);
    v.throwIfInvalid();
    const eventId = request.eventId.toLowerCase();
    const row = await selectAuditEvent(runtime.pool, context.principal, eventId);
    if (!row) {
      throw new NotFoundError('audit event', eventId);
    }
    recordTrailRead(runtime, context, [row]);
    return { event: toAuditEventMessage(row) };
  };
}
