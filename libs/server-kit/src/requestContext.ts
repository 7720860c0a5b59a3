import type { AccessEvent, AuditContext, IdempotencyKey } from '@clinical/db';
import { activeTraceId } from '@clinical/telemetry';
import { canonicalRequestBytes, type MessageFns } from './messages/canonicalForm.js';
import type { HandlerContext } from './middleware/authentication.js';

/**
 * The caller's IP from the call's peer, if any. grpc-js gives `10.0.0.1:5000`
 * or `[::1]:5000`; other stacks prefix `ipv4:` / `ipv6:`.
 */
export function clientIpOf(context: Pick<HandlerContext, 'peer'>): string | undefined {
  const peer = context.peer.replace(/^ipv[46]:/, '');
  const match = /^([\d.]+):\d+$/.exec(peer) ?? /^\[([0-9a-fA-F:.]+)\]:\d+$/.exec(peer);
  return match?.[1];
}

/** The audit context of a write made for this call. */
export function auditContextOf(context: HandlerContext, extra: { requestId?: string; reason?: string } = {}): AuditContext {
  return {
    userId: context.principal.sub,
    requestId: extra.requestId || undefined,
    reason: extra.reason || undefined,
    traceId: activeTraceId(),
    clientIp: clientIpOf(context),
  };
}

/** What a read returned: one entity of one patient. */
export interface AccessedEntity {
  readonly entityType: string;
  readonly entityId: string;
  readonly patientId: string;
}

/** Access events for the entities this call returns, attributed to its caller, method and trace. */
export function accessEventsOf(context: HandlerContext, entities: readonly AccessedEntity[]): AccessEvent[] {
  const traceId = activeTraceId();
  const clientIp = clientIpOf(context);
  return entities.map((entity) => ({
    entityType: entity.entityType,
    entityId: entity.entityId,
    patientId: entity.patientId,
    actor: context.principal.sub,
    method: context.method,
    traceId,
    clientIp,
  }));
}

/**
 * The idempotency key of a mutation: the caller's request_id (lower case),
 * scoped to the method (`scope`, its path unless named) and the caller, with
 * the request's canonical bytes so that a reused id with a different request
 * is refused while the same request in another wire order is not. None
 * without a request_id.
 */
export function idempotencyKeyOf<Request extends { requestId: string }>(
  context: HandlerContext,
  request: Request,
  requestType: MessageFns<Request>,
  scope: string = context.method,
): IdempotencyKey | undefined {
  return request.requestId
    ? {
        scope: `${scope}:${context.principal.sub}`,
        requestId: request.requestId.toLowerCase(),
        requestBytes: canonicalRequestBytes(requestType, request),
      }
    : undefined;
}
