import { sessionV1 } from '@clinical/contracts';
import { defineService, type ServiceBinding, type ServiceRuntime } from '@clinical/server-kit';
import { listSessionsHandler } from './sessions/listSessions.js';
import { revokeSessionHandler, revokeUserSessionsHandler } from './sessions/revokeSessions.js';

/** clinical.audit.v1.SessionService: administrators see and end the sessions behind tokens. */
export function sessionService(runtime: ServiceRuntime): ServiceBinding {
  return defineService(
    sessionV1.SessionServiceDefinition,
    {
      listSessions: listSessionsHandler(runtime),
      revokeSession: revokeSessionHandler(runtime),
      revokeUserSessions: revokeUserSessionsHandler(runtime),
    },
    {
      listSessions: { roles: ['admin'], cost: 2 },
      revokeSession: { roles: ['admin'], cost: 1 },
      revokeUserSessions: { roles: ['admin'], cost: 2 },
    },
  );
}
