import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/** util-linux's setpriv, when this system has it (Linux does; others run children untied). */
const SETPRIV = spawnSync('sh', ['-c', 'command -v setpriv'], { encoding: 'utf8' }).stdout.trim() || undefined;

/**
 * Spawns a child that gets `signalOnParentDeath` when this process dies, even
 * by SIGKILL (setpriv --pdeathsig: the kernel sends it), so that nothing
 * `npm start` started outlives it. setpriv execs the command: the child's pid
 * is the command's.
 */
export function spawnTied(
  command: string,
  args: readonly string[],
  options: SpawnOptions,
  signalOnParentDeath: 'SIGTERM' | 'SIGINT' = 'SIGTERM',
): ChildProcess {
  return SETPRIV
    ? spawn(SETPRIV, ['--pdeathsig', signalOnParentDeath.slice(3), '--', command, ...args], options)
    : spawn(command, args, options);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The command line of a running process ('' when it is gone or unreadable, or off Linux). */
export function commandLineOf(pid: number): string {
  const file = `/proc/${pid}/cmdline`;
  try {
    return existsSync(file) ? readFileSync(file, 'utf8').split('\0').join(' ').trim() : '';
  } catch {
    return '';
  }
}

/** Waits until process `pid` is gone; false if it still runs after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      return false;
    }
    await delay(50);
  }
  return true;
}

/**
 * Sends `signal` to a child and resolves once it has exited (at once if it
 * already has); after `killAfterMs` it gets SIGKILL.
 */
export function stopChild(child: ChildProcess, signal: NodeJS.Signals, killAfterMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    child.once('exit', () => {
      clearTimeout(killer);
      resolve();
    });
    child.kill(signal);
  });
}

/** Stops a process this script did not spawn (a leftover of an earlier start): `signal`, then SIGKILL. */
export async function stopLeftover(pid: number, signal: NodeJS.Signals, killAfterMs: number): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  if (!(await waitForExit(pid, killAfterMs))) {
    process.kill(pid, 'SIGKILL');
    await waitForExit(pid, 5_000);
  }
}
