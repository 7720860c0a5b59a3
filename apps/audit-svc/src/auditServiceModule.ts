import type { ServiceModule } from '@clinical/server-kit';
import { agentContextService } from './agentContextService.js';
import { auditService } from './auditService.js';
import { loadAuditSettings, type AuditSettings } from './auditSettings.js';
import { sessionService } from './sessionService.js';
import { observeChainBacklog } from './trail/chainBacklogMetrics.js';
import { startChainSealer, type ChainSealer } from './trail/chainSealer.js';

/**
 * audit-svc with these settings (by default, read from the environment when
 * the service starts).
 */
export function createAuditServiceModule(settings?: Partial<AuditSettings>): ServiceModule {
  let sealer: ChainSealer | undefined;
  let stopObserving: (() => void) | undefined;
  return {
    name: 'audit-svc',
    createServices: (runtime) => {
      const resolved = { ...loadAuditSettings(), ...settings };
      sealer = startChainSealer({
        pool: runtime.pool,
        intervalMs: resolved.sealIntervalMs,
        batchSize: resolved.sealBatchSize,
        logger: runtime.logger,
      });
      stopObserving = observeChainBacklog(runtime.pool);
      return [auditService(runtime, resolved), agentContextService(runtime), sessionService(runtime)];
    },
    async stop() {
      stopObserving?.();
      await sealer?.stop();
    },
  };
}

/** audit-svc: the audit trail, the AI-agent context store, and the administration of sessions. */
export const auditServiceModule: ServiceModule = createAuditServiceModule();
