import { randomUUID } from 'node:crypto';
import { auditV1, sessionV1 } from '@clinical/contracts';
import { startTestService, type TestService } from '@clinical/server-kit/testing';
import { Status } from 'nice-grpc';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditServiceModule } from '../auditServiceModule.js';
import { connectAs, expectStatus } from '../testKit.js';

let service: TestService;
let admin: pg.Client;
let sessions: sessionV1.SessionServiceClient;

const sidOf = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sid: string }).sid;

beforeAll(async () => {
  service = await startTestService(auditServiceModule);
  admin = await connectAs(service);
  sessions = service.client(sessionV1.SessionServiceDefinition, await service.token({ sub: 'security-officer', roles: ['admin'], sites: '*' }));
});

afterAll(async () => {
  await admin?.end();
  await service?.stop();
});

describe('SessionService', () => {
  it('ends one session: the next call with its token is refused; the revocation is audited with its reason', async () => {
    const token = await service.token({ sub: 'auditor-7', roles: ['auditor'], sites: '*' });
    const trail = service.client(auditV1.AuditServiceDefinition, token);
    await expect(trail.listAuditEvents({ pageSize: 1 })).resolves.toBeDefined();

    const { session } = await sessions.revokeSession({ sessionId: sidOf(token), reason: 'laptop reported stolen' });
    expect(session).toMatchObject({ sessionId: sidOf(token), user: 'auditor-7', revokedBy: 'security-officer' });
    expect(session!.revokeTime).toBeInstanceOf(Date);
    await expectStatus(trail.listAuditEvents({ pageSize: 1 }), Status.UNAUTHENTICATED);

    const { rows } = await admin.query(
      `SELECT user_id, reason, action FROM audit_events WHERE entity_type = 'session' AND entity_key = $1 ORDER BY event_seq`,
      [sidOf(token)],
    );
    expect(rows).toEqual([
      expect.objectContaining({ action: 'INSERT' }),
      { user_id: 'security-officer', reason: 'laptop reported stolen', action: 'UPDATE' },
    ]);
    // Again: nothing changes, the first revocation stands.
    const again = await sessions.revokeSession({ sessionId: sidOf(token), reason: 'again' });
    expect(again.session).toEqual(session);
  });

  it('ends every session of a user, and lists them newest first', async () => {
    const tokens = [];
    for (let index = 0; index < 3; index += 1) {
      tokens.push(await service.token({ sub: 'leaver-2', roles: ['auditor'], sites: '*' }));
    }
    const other = await service.token({ sub: 'stayer-2', roles: ['auditor'], sites: '*' });
    expect((await sessions.revokeUserSessions({ user: 'leaver-2', reason: 'left the study team' })).revokedCount).toBe('3');
    for (const token of tokens) {
      await expectStatus(service.client(auditV1.AuditServiceDefinition, token).listAuditEvents({ pageSize: 1 }), Status.UNAUTHENTICATED);
    }
    await expect(service.client(auditV1.AuditServiceDefinition, other).listAuditEvents({ pageSize: 1 })).resolves.toBeDefined();

    const first = await sessions.listSessions({ user: 'leaver-2', pageSize: 2, pageToken: '' });
    const second = await sessions.listSessions({ user: 'leaver-2', pageSize: 2, pageToken: first.nextPageToken });
    const listed = [...first.sessions, ...second.sessions];
    expect(second.nextPageToken).toBe('');
    expect(listed.map((session) => session.sessionId).sort()).toEqual(tokens.map(sidOf).sort());
    expect(listed.every((session) => session.revokedBy === 'security-officer')).toBe(true);
    const times = listed.map((session) => session.createTime!.getTime());
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it('a retry of RevokeUserSessions tells the session cache again, though it ends nothing new', async () => {
    const token = await service.token({ sub: 'leaver-3', roles: ['auditor'], sites: '*' });
    const trail = service.client(auditV1.AuditServiceDefinition, token);
    await expect(trail.listAuditEvents({ pageSize: 1 })).resolves.toBeDefined();
    expect((await sessions.revokeUserSessions({ user: 'leaver-3', reason: 'left the study team' })).revokedCount).toBe('1');
    // As a Redis that was away when the first call told it, and came back with its data, holds it.
    await service.running.runtime.redis!.set(`session:${sidOf(token)}`, 'live', 'EX', 3_600);
    await expect(trail.listAuditEvents({ pageSize: 1 })).resolves.toBeDefined();

    expect((await sessions.revokeUserSessions({ user: 'leaver-3', reason: 'left the study team' })).revokedCount).toBe('0');
    await expectStatus(trail.listAuditEvents({ pageSize: 1 }), Status.UNAUTHENTICATED);
  });

  it('answers NOT_FOUND for an unknown session, INVALID_ARGUMENT naming the field, and PERMISSION_DENIED to a non-admin', async () => {
    await expectStatus(sessions.revokeSession({ sessionId: randomUUID(), reason: 'x' }), Status.NOT_FOUND);
    expect((await expectStatus(sessions.revokeSession({ sessionId: randomUUID(), reason: '' }), Status.INVALID_ARGUMENT)).details).toMatch(/reason/);
    expect((await expectStatus(sessions.listSessions({ user: '', pageSize: 0, pageToken: '' }), Status.INVALID_ARGUMENT)).details).toMatch(/user/);
    const auditor = service.client(sessionV1.SessionServiceDefinition, await service.token({ sub: 'auditor-8', roles: ['auditor'], sites: '*' }));
    await expectStatus(auditor.revokeUserSessions({ user: 'auditor-8', reason: 'x' }), Status.PERMISSION_DENIED);
  });
});
