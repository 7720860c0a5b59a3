import { Worker } from 'node:worker_threads';
import { UnavailableError } from '@clinical/errors';
import { tracer } from '@clinical/telemetry';
import type { ChainScanOutcome, ChainScanRequest } from './scanChain.js';

/**
 * The worker's own heap limits. Its garbage is the chunks COPY delivers
 * (hundreds of MB per million events) and two digest strings per event:
 * in the service's heap (tens of MB live) they set off a full collection
 * every few hundred milliseconds, which cost as much CPU as the hashing; in
 * this small heap collecting them is cheap. A young generation of 4 MB
 * frees the chunks soon after they are read (a scan peaked ~12 MB higher
 * with 8 MB, for no less CPU); the old one holds little but the runs
 * ChainLinks keeps (MAX_OPEN_RUNS, ~15 MB at most).
 */
const WORKER_LIMITS = { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 4 };

type WorkerMessage =
  | { readonly outcome: ChainScanOutcome }
  | { readonly error: { readonly name: string; readonly message: string; readonly code?: string } };

/** The error the worker reported, as the service's error mapping expects it (a SQLSTATE in `code`). */
function reported(error: { readonly name: string; readonly message: string; readonly code?: string }): Error {
  if (error.name === 'UnavailableError') {
    return new UnavailableError(error.message);
  }
  return Object.assign(new Error(`verifying the audit trail failed: ${error.message}`), { code: error.code });
}

/**
 * Runs scanChain in a worker thread of its own, one per verification, and
 * returns its outcome: the service's event loop and heap stay out of the
 * scan (see WORKER_LIMITS). From the bundle the worker is
 * dist/verifyChain.worker.mjs; from source (tests), the .ts file through tsx.
 * An abort terminates the worker, whose connections close with it.
 * @throws what the scan threw, or `signal`'s reason.
 */
export async function runChainScan(request: ChainScanRequest, signal?: AbortSignal): Promise<ChainScanOutcome> {
  signal?.throwIfAborted();
  // The worker's statements are not traced (the telemetry is the main thread's): this span stands for them.
  const span = tracer.startSpan('AuditService/VerifyAuditTrail scan', {
    attributes: { 'audit.verify.connections': request.connections, 'audit.verify.first': request.first, 'audit.verify.last': request.last },
  });
  const fromSource = import.meta.url.endsWith('.ts');
  const worker = new Worker(new URL(fromSource ? './verifyChain.worker.ts' : './verifyChain.worker.mjs', import.meta.url), {
    workerData: request,
    // Not the service's flags (its --import of the telemetry, its heap sizes): the worker has its own.
    execArgv: fromSource ? ['--import', 'tsx'] : [],
    resourceLimits: WORKER_LIMITS,
  });
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<ChainScanOutcome>((resolve, reject) => {
      onAbort = () => {
        void worker.terminate();
        reject(signal?.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      worker.once('message', (message: WorkerMessage) => ('outcome' in message ? resolve(message.outcome) : reject(reported(message.error))));
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the verification worker exited (${code}) without an answer`)));
    });
  } finally {
    if (onAbort) {
      signal?.removeEventListener('abort', onAbort);
    }
    span.end();
  }
}
