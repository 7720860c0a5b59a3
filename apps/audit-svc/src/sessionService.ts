import { sessionV1 } from '@clinical/contracts';
import { sessionServicePolicies } from '@clinical/method-policies';
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
    sessionServicePolicies,
  );
}
