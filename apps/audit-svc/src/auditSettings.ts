import { loadConfig } from '@clinical/server-kit';
import { z } from 'zod';

/** audit-svc's own settings, beside those every service reads. */
export interface AuditSettings {
  /** Events older than this many months are past retention (PurgeExpiredAuditEvents). */
  readonly retentionMonths: number;
  /** event_seq values VerifyAuditTrail reads per COPY statement (a slice). */
  readonly verifyBatchSize: number;
  /** Connections (one snapshot) VerifyAuditTrail reads slices on at once: about the cores PostgreSQL may give it. */
  readonly verifyConnections: number;
  /** How often committed events are sealed into the hash chain (the not-yet-chained window). */
  readonly sealIntervalMs: number;
  /** Events chained per sealing transaction. */
  readonly sealBatchSize: number;
}

const schema = z.object({
  // 6 years: the HIPAA minimum for documentation; a trial's regulations may ask for more.
  AUDIT_RETENTION_MONTHS: z.coerce.number().int().min(1).max(1_200).default(72),
  AUDIT_VERIFY_BATCH_SIZE: z.coerce.number().int().min(1_000).max(10_000_000).default(500_000),
  AUDIT_VERIFY_CONNECTIONS: z.coerce.number().int().min(1).max(8).default(2),
  AUDIT_SEAL_INTERVAL_MS: z.coerce.number().int().min(10).max(60_000).default(200),
  AUDIT_SEAL_BATCH_SIZE: z.coerce.number().int().min(100).max(1_000_000).default(50_000),
});

/**
 * Reads audit-svc's settings from the environment.
 * @throws ConfigError naming each bad variable.
 */
export function loadAuditSettings(env: NodeJS.ProcessEnv = process.env): AuditSettings {
  const parsed = loadConfig(schema, env);
  return {
    retentionMonths: parsed.AUDIT_RETENTION_MONTHS,
    verifyBatchSize: parsed.AUDIT_VERIFY_BATCH_SIZE,
    verifyConnections: parsed.AUDIT_VERIFY_CONNECTIONS,
    sealIntervalMs: parsed.AUDIT_SEAL_INTERVAL_MS,
    sealBatchSize: parsed.AUDIT_SEAL_BATCH_SIZE,
  };
}
