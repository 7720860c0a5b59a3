/**
 * The worker thread a verification's scan runs in (see runChainScan): it
 * reads the request from workerData, scans, posts the outcome or the error,
 * and ends with its connections.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { scanChain, type ChainScanRequest } from './scanChain.js';

const port = parentPort;
if (!port) {
  throw new Error('verifyChain.worker runs in a worker thread (see runChainScan)');
}
try {
  port.postMessage({ outcome: await scanChain(workerData as ChainScanRequest) });
} catch (error) {
  // Errors cross threads as plain data: what the service's error mapping reads (class name, SQLSTATE), never values.
  const { name, message, code } = error as { name?: unknown; message?: unknown; code?: unknown };
  port.postMessage({
    error: { name: String(name ?? 'Error'), message: String(message ?? error), code: typeof code === 'string' ? code : undefined },
  });
}
