import { auditV1, patientV1 } from '@clinical/contracts';
import { mintToken } from '@clinical/server-kit';
import { clientOn, expectStatus, startTestService, type TestService } from '@clinical/server-kit/testing';
import { eventually } from '@clinical/testing';
import { Status } from 'nice-grpc';
import { afterEach, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { sealPendingEvents } from './chainSealer.js';

const { AuditAction, AuditEventType } = auditV1;
const LIST_AUDIT_EVENTS = '/clinical.audit.v1.AuditService/ListAuditEvents';
const running: TestService[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((service) => service.stop()));
});

async function serviceRecordingRefusals(perSourcePerMinute: number) {
  const service = await startTestService(auditServiceModule, { REFUSAL_AUDIT_PER_MINUTE: String(perSourcePerMinute) });
  running.push(service);
  const auditor = service.client(auditV1.AuditServiceDefinition, await service.token({ sub: 'auditor-r', roles: ['auditor'], sites: '*' }));
  // Signed with a key the service does not hold: its subject must not be believed.
  const { token: forged } = await mintToken({
    secret: 'a-secret-the-service-has-never-seen-0123456789',
    sub: 'mallory',
    roles: ['admin'],
    sites: '*',
    issuer: service.config.jwt.issuer,
    audience: service.config.jwt.audience,
  });
  /**
   * Every refusal recorded so far: each refusal's limiter command went to
   * Redis before its call was answered, so a command sent after them returns
   * after their answers were acted on; then the recorder writes its queue.
   */
  const recordedRefusals = async () => {
    await service.redis.ping();
    await service.running.runtime.accessRecorder.flush();
    const { events } = await auditor.listAuditEvents({ eventType: AuditEventType.AUDIT_EVENT_TYPE_ACCESS_DENIED, pageSize: 100 });
    return events;
  };
  return { service, auditor, forged, recordedRefusals };
}

describe('refused calls in the audit trail', () => {
  it('records who tried what, from where and why it was refused, without token material, in the verified chain', async () => {
    const { service, auditor, forged, recordedRefusals } = await serviceRecordingRefusals(60);
    const agentToken = await service.token({ sub: 'agent-r', roles: ['agent'], sites: '*' });

    await expectStatus(clientOn(service.channel, auditV1.AuditServiceDefinition).listAuditEvents({}), Status.UNAUTHENTICATED);
    await expectStatus(service.client(auditV1.AuditServiceDefinition, forged).listAuditEvents({}), Status.UNAUTHENTICATED);
    await expectStatus(service.client(auditV1.AuditServiceDefinition, agentToken).listAuditEvents({}), Status.PERMISSION_DENIED);
    // A method this service does not serve is refused by gRPC itself, not by admission: nothing to record.
    await expectStatus(service.client(patientV1.PatientServiceDefinition, agentToken).getPatient({ patientId: 'x' }), Status.UNIMPLEMENTED);

    const refusals = await recordedRefusals();
    expect(
      refusals
        .map((event) => ({
          action: event.action,
          userId: event.userId,
          reason: event.reason,
          entityType: event.entityType,
          entityId: event.entityId,
          ipAddress: event.ipAddress,
          patientId: event.patientId,
        }))
        .sort((a, b) => a.reason.localeCompare(b.reason)),
    ).toEqual([
      { action: AuditAction.AUDIT_ACTION_AUTHENTICATE, userId: 'anonymous', reason: 'invalid token', entityType: 'rpc', entityId: LIST_AUDIT_EVENTS, ipAddress: '127.0.0.1', patientId: '' },
      { action: AuditAction.AUDIT_ACTION_AUTHENTICATE, userId: 'anonymous', reason: 'missing bearer token', entityType: 'rpc', entityId: LIST_AUDIT_EVENTS, ipAddress: '127.0.0.1', patientId: '' },
      { action: AuditAction.AUDIT_ACTION_AUTHORIZE, userId: 'agent-r', reason: 'requires one of the roles: auditor, admin', entityType: 'rpc', entityId: LIST_AUDIT_EVENTS, ipAddress: '127.0.0.1', patientId: '' },
    ]);
    const stored = JSON.stringify(refusals);
    for (const part of [...forged.split('.'), ...agentToken.split('.'), 'mallory']) {
      expect(stored).not.toContain(part);
    }

    await sealPendingEvents(service.running.runtime.pool, 100_000, { waitForOtherSealers: true });
    const verified = await auditor.verifyAuditTrail({});
    expect(verified.intact).toBe(true);
    expect(verified.unchainedCount).toBe('0');
    const sealed = await auditor.listAuditEvents({ eventType: AuditEventType.AUDIT_EVENT_TYPE_ACCESS_DENIED, pageSize: 100 });
    expect(sealed.events.every((event) => Number(event.sequenceNumber) > 0)).toBe(true);
  });

  it('records at most the per-source limit a minute, then says once that it stops recording', async () => {
    const { service, forged, recordedRefusals } = await serviceRecordingRefusals(5);
    const intruder = service.client(auditV1.AuditServiceDefinition, forged);
    for (let call = 0; call < 12; call += 1) {
      await expectStatus(intruder.listAuditEvents({}), Status.UNAUTHENTICATED);
    }
    const refusals = await eventually(async () => {
      const events = await recordedRefusals();
      return events.length >= 6 ? events : undefined;
    }, 30_000, 'the refusals past the limit');
    const reasons = refusals.map((event) => event.reason).sort();
    expect(reasons).toEqual([...Array<string>(5).fill('invalid token'), expect.stringMatching(/^rate limited: further refusals from this source are not recorded for \d+ s \(invalid token\)$/)]);
    // Still refused, still not recorded.
    await expectStatus(intruder.listAuditEvents({}), Status.UNAUTHENTICATED);
    expect(await recordedRefusals()).toHaveLength(6);
  });
});
