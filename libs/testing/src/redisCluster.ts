import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { eventually } from './eventually.js';
import { freePort } from './freePort.js';

/** A Redis Cluster a test owns: three masters, each with one replica, on free ports of 127.0.0.1. */
export interface RedisCluster {
  /** host:port of every node, masters and replicas: seeds for a cluster client. */
  readonly nodes: readonly string[];
  /** The ports of the nodes that serve slots now. */
  masters(): Promise<number[]>;
  /**
   * Kills the master on `port` outright (SIGKILL) and waits until its replica
   * has taken over its slots and the cluster is whole again, as every
   * surviving node sees it. Returns the port of the promoted replica.
   */
  killMaster(port: number): Promise<number>;
  /** Starts a killed node again and waits until it has rejoined as a replica in sync with its master. */
  restartNode(port: number): Promise<void>;
  remove(): Promise<void>;
}

const NODE_COUNT = 6;
/** How long a master may be silent before its replica takes over: short, so that tests see a failover in seconds. */
const NODE_TIMEOUT_MS = 1_000;

const redisCli = async (port: number, ...args: string[]): Promise<string> =>
  (await promisify(execFile)('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8' })).stdout;

/** CLUSTER NODES of the node on `port`, one entry per node it knows. */
async function clusterNodes(port: number): Promise<{ port: number; flags: string[]; master: string; id: string; slots: string[] }[]> {
  return (await redisCli(port, 'cluster', 'nodes'))
    .trim()
    .split('\n')
    .map((line) => {
      const [id, address, flags, master, , , , , ...slots] = line.split(' ');
      return { id: id!, port: Number(address!.split('@')[0]!.split(':')[1]), flags: flags!.split(','), master: master!, slots };
    });
}

/**
 * Starts six redis-servers with cluster mode on, joins them with
 * `redis-cli --cluster create --cluster-replicas 1`, and waits until every
 * node reports the cluster ok and every replica is in sync. Nothing is kept on
 * disk beyond each node's cluster configuration. The servers die with the
 * test process (setpriv --pdeathsig), whatever ends it.
 */
export async function startRedisCluster(): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'redis-cluster-'));
  const ports: number[] = [];
  // Each node's cluster bus gets a free port of its own: by default it is the port + 10,000, past 65,535 for a high ephemeral port.
  const busPorts = new Map<number, number>();
  for (let index = 0; index < NODE_COUNT; index += 1) {
    const port = await freePort();
    ports.push(port);
    busPorts.set(port, await freePort());
  }
  const children = new Map<number, ChildProcess>();
  const startNode = (port: number) => {
    const child = spawn(
      'setpriv',
      [
        '--pdeathsig', 'KILL', '--', 'redis-server',
        '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
        '--cluster-enabled', 'yes', '--cluster-port', String(busPorts.get(port)), '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', String(NODE_TIMEOUT_MS),
      ],
      { stdio: 'ignore' },
    );
    children.set(port, child);
  };
  const running = (port: number) => children.get(port)!.exitCode === null && children.get(port)!.signalCode === null;
  ports.forEach(startNode);
  const cluster: RedisCluster = {
    nodes: ports.map((port) => `127.0.0.1:${port}`),
    async masters() {
      const alive = ports.find(running)!;
      return (await clusterNodes(alive)).filter((node) => node.flags.includes('master') && !node.flags.includes('fail') && node.slots.length > 0).map((node) => node.port);
    },
    async killMaster(port) {
      const child = children.get(port);
      if (!child) {
        throw new Error(`no node on ${port}`);
      }
      const survivors = ports.filter((other) => other !== port && running(other));
      const view = await clusterNodes(port);
      const killedId = view.find((node) => node.flags.includes('myself'))!.id;
      const replica = view.find((node) => node.master === killedId)?.port;
      if (replica === undefined) {
        throw new Error(`the node on ${port} is not a master with a replica`);
      }
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
      await until(async () => {
        const views = await Promise.all(survivors.map((survivor) => clusterNodes(survivor)));
        const infos = await Promise.all(survivors.map((survivor) => redisCli(survivor, 'cluster', 'info')));
        return (
          infos.every((info) => info.includes('cluster_state:ok')) &&
          views.every((nodes) => nodes.some((node) => node.port === replica && node.flags.includes('master') && node.slots.length > 0))
        );
      }, 'the replica to take over');
      return replica;
    },
    async restartNode(port) {
      if (running(port)) {
        throw new Error(`the node on ${port} is running`);
      }
      // It comes back empty, with its cluster configuration: the cluster makes it a replica of whoever holds its old slots.
      startNode(port);
      await until(async () => {
        const replication = await redisCli(port, 'info', 'replication');
        const infos = await Promise.all(ports.map((other) => redisCli(other, 'cluster', 'info')));
        return replication.includes('role:slave') && replication.includes('master_link_status:up') && infos.every((info) => info.includes('cluster_state:ok'));
      }, 'the node to rejoin as a replica');
    },
    async remove() {
      await Promise.all(
        [...children.values()].map(
          (child) =>
            new Promise<void>((resolve) => {
              if (child.exitCode !== null || child.signalCode !== null) {
                resolve();
                return;
              }
              child.once('exit', () => resolve());
              child.kill('SIGKILL');
            }),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await until(async () => (await Promise.all(ports.map((port) => redisCli(port, 'ping').catch(() => '')))).every((reply) => reply.trim() === 'PONG'), 'every node to start');
    await promisify(execFile)('redis-cli', ['--cluster', 'create', ...cluster.nodes, '--cluster-replicas', '1', '--cluster-yes'], { encoding: 'utf8' });
    await until(async () => {
      const infos = await Promise.all(ports.map((port) => redisCli(port, 'cluster', 'info')));
      const replication = await Promise.all(ports.map((port) => redisCli(port, 'info', 'replication')));
      return infos.every((info) => info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${NODE_COUNT}`)) &&
        replication.filter((info) => info.includes('role:slave')).length === NODE_COUNT / 2 &&
        replication.every((info) => !info.includes('role:slave') || info.includes('master_link_status:up'));
    }, 'the cluster to form');
  } catch (error) {
    await cluster.remove();
    throw error;
  }
  return cluster;
}

/** Polls `condition` until it holds, at most a minute; a failing probe (a node not up yet) counts as not yet. */
const until = (condition: () => Promise<boolean>, what: string): Promise<true> =>
  eventually(async () => ((await condition().catch(() => false)) ? true : undefined), 60_000, `Redis Cluster: ${what}`);
