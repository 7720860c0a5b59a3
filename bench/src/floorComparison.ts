import type { FloorSpec } from './floorServer.js';
import { runLoadProcesses, type CpuMeasuredLoad } from './loadProcesses.js';
import { startFloorProcess, type ServerProcess } from './processes.js';
import type { ScenarioReport } from './report.js';
import type { LoadShape } from './scenario.js';

/** A floor server's spec (path included: it serves the same method path), or a server already running it. */
export type Floor = FloorSpec | (ServerProcess & { readonly path: string });

/** One RPC measured against its floor at one load shape. */
export interface FloorComparison {
  readonly scenario: string;
  /** What the floor is: 'bare grpc-js', 'database-read floor'... */
  readonly baselineName: string;
  readonly service: ServerProcess;
  readonly floor: Floor;
  readonly authorization?: string;
  /** Requests for the service at this shape (fresh ones where a repeat would be answered differently, e.g. from a cache). */
  readonly serviceRequests: readonly Uint8Array[];
  /** Requests for the floor; the service's by default. */
  readonly floorRequests?: readonly Uint8Array[];
  readonly shape: LoadShape;
  readonly extra?: ScenarioReport['extra'];
}

/** One of several floors an RPC is measured against (see compareWithFloors). */
export interface FloorSide {
  readonly baselineName: string;
  readonly floor: Floor;
  /** Requests for this floor; the service's by default. */
  readonly floorRequests?: readonly Uint8Array[];
  /** Appended to the scenario's name in this floor's report row (the first floor's usually has none). */
  readonly label?: string;
}

/** One RPC measured once against several floors at one load shape. */
export interface FloorsComparison extends Omit<FloorComparison, 'baselineName' | 'floor' | 'floorRequests'> {
  readonly floors: readonly FloorSide[];
}

/**
 * Measures the floor server and then the service with the same load from
 * load processes of their own, and reports them side by side with each one's
 * CPU time per call.
 */
export async function compareWithFloor(comparison: FloorComparison): Promise<ScenarioReport> {
  const { baselineName, floor, floorRequests, ...common } = comparison;
  const [report] = await compareWithFloors({ ...common, floors: [{ baselineName, floor, ...(floorRequests ? { floorRequests } : {}) }] });
  return report!;
}

/**
 * compareWithFloor against several floors (an echo of the same bytes and a
 * database-read floor, say): each floor in turn, then the service once, all
 * with the same load; one report per floor, each beside the same service
 * measurement.
 */
export async function compareWithFloors(comparison: FloorsComparison): Promise<ScenarioReport[]> {
  const { shape } = comparison;
  const load = (address: string, path: string, pid: number, requests: readonly Uint8Array[]): Promise<CpuMeasuredLoad> =>
    runLoadProcesses({
      address,
      path,
      authorization: comparison.authorization,
      requests,
      concurrency: shape.concurrency,
      ratePerSecond: shape.ratePerSecond,
      durationMs: shape.durationMs,
      warmupMs: shape.warmupMs,
      watch: { server: pid },
    });
  const baselines: CpuMeasuredLoad[] = [];
  for (const side of comparison.floors) {
    const running = 'address' in side.floor;
    const floor = 'address' in side.floor ? side.floor : await startFloorProcess(side.floor);
    try {
      baselines.push(await load(floor.address, side.floor.path, floor.pid, side.floorRequests ?? comparison.serviceRequests));
    } finally {
      if (!running) {
        await floor.stop();
      }
    }
  }
  // Every floor serves the measured method's path.
  const measured = await load(comparison.service.address, comparison.floors[0]!.floor.path, comparison.service.pid, comparison.serviceRequests);
  return comparison.floors.map((side, index) => {
    const baseline = baselines[index]!;
    return {
      scenario: `${comparison.scenario} ${shape.label}${side.label ? ` ${side.label}` : ''}`,
      baselineName: side.baselineName,
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
  });
}
