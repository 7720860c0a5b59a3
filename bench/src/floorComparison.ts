import type { FloorSpec } from './floorServer.js';
import { runLoadProcesses, type CpuMeasuredLoad } from './loadProcesses.js';
import { startFloorProcess, type ServerProcess } from './processes.js';
import type { ScenarioReport } from './report.js';
import type { LoadShape } from './scenario.js';

/** One RPC measured against its floor at one load shape. */
export interface FloorComparison {
  readonly scenario: string;
  /** What the floor is: 'bare grpc-js', 'database-read floor'... */
  readonly baselineName: string;
  readonly service: ServerProcess;
  /** The floor server's spec (path included: it serves the same method path), or a server already running it. */
  readonly floor: FloorSpec | (ServerProcess & { readonly path: string });
  readonly authorization?: string;
  /** Requests for the service at this shape (fresh ones where a repeat would be answered differently, e.g. from a cache). */
  readonly serviceRequests: readonly Uint8Array[];
  /** Requests for the floor; the service's by default. */
  readonly floorRequests?: readonly Uint8Array[];
  readonly shape: LoadShape;
  readonly extra?: ScenarioReport['extra'];
}

/**
 * Measures the floor server and then the service with the same load from
 * load processes of their own, and reports them side by side with each one's
 * CPU time per call.
 */
export async function compareWithFloor(comparison: FloorComparison): Promise<ScenarioReport> {
  const { shape } = comparison;
  const load = (address: string, pid: number, requests: readonly Uint8Array[]): Promise<CpuMeasuredLoad> =>
    runLoadProcesses({
      address,
      path: comparison.floor.path,
      authorization: comparison.authorization,
      requests,
      concurrency: shape.concurrency,
      ratePerSecond: shape.ratePerSecond,
      durationMs: shape.durationMs,
      warmupMs: shape.warmupMs,
      watch: { server: pid },
    });
  const running = 'address' in comparison.floor;
  const floor = 'address' in comparison.floor ? comparison.floor : await startFloorProcess(comparison.floor);
  let baseline: CpuMeasuredLoad;
  try {
    baseline = await load(floor.address, floor.pid, comparison.floorRequests ?? comparison.serviceRequests);
  } finally {
    if (!running) {
      await floor.stop();
    }
  }
  const measured = await load(comparison.service.address, comparison.service.pid, comparison.serviceRequests);
  return {
    scenario: `${comparison.scenario} ${shape.label}`,
    baselineName: comparison.baselineName,
    baseline,
    measured,
    concurrency: shape.concurrency,
    servicePeakRssMiB: comparison.service.peakRssMiB(),
    cpu: {
      serviceUsPerCall: measured.cpuUsPerCall.server!,
      baselineUsPerCall: baseline.cpuUsPerCall.server!,
      loadGeneratorCores: { service: measured.loadGeneratorCores, baseline: baseline.loadGeneratorCores },
      loadGeneratorSaturated: measured.loadGeneratorSaturated || baseline.loadGeneratorSaturated,
    },
    ...(comparison.extra ? { extra: comparison.extra } : {}),
  };
}
