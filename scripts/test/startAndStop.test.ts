import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually } from '@clinical/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDevStack, exitOf, isListening, type DevStack } from './devStack.js';

let stack: DevStack;

beforeAll(async () => {
  stack = await createDevStack();
});

afterAll(() => {
  stack?.remove();
});

describe('npm start, then Ctrl-C', () => {
  it('stops everything it started, every time: nothing listens on its ports and no process is left', async () => {
    for (let round = 1; round <= 3; round += 1) {
      const run = stack.npmStart();
      await stack.untilServing(run);
      // Ctrl-C in a terminal: SIGINT to the whole foreground process group.
      process.kill(-run.child.pid!, 'SIGINT');
      await exitOf(run.child);
      expect(run.output(), `round ${round}`).toContain('[start] stopped');
      await stack.expectNothingLeft();
    }
  }, 600_000);

  it('takes everything down with it when it is killed outright (SIGKILL), leaving nothing to clean', async () => {
    const run = stack.npmStart();
    await stack.untilServing(run);
    const script = stack.processes().find(({ command }) => command.includes('scripts/run.mjs start'));
    expect(script).toBeDefined();
    process.kill(script!.pid, 'SIGKILL');
    // The kernel tells its children (setpriv --pdeathsig): the services drain and stop, PostgreSQL and Redis stop.
    await eventually(async () => (stack.processes().length === 0 ? true : undefined), 60_000, 'every process to stop');
    process.kill(-run.child.pid!, 'SIGKILL');
    await exitOf(run.child);
    await stack.expectNothingLeft();
  }, 300_000);

  it('stops a redis-server an earlier start left running on its port, and says so', async () => {
    // As a start killed on a system without setpriv would leave it: running, with its pid file.
    const leftover = spawn('redis-server', ['--port', String(stack.ports.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
      detached: true,
      stdio: 'ignore',
      env: stack.env,
    });
    await eventually(async () => ((await isListening(stack.ports.redis)) ? true : undefined), 30_000, 'the leftover redis-server');
    writeFileSync(join(stack.dataDir, 'redis-server.json'), JSON.stringify({ pid: leftover.pid, port: stack.ports.redis }));

    const run = stack.npmStart();
    await stack.untilServing(run);
    expect(run.output()).toContain(
      `an earlier start left its redis-server running on 127.0.0.1:${stack.ports.redis} (pid ${leftover.pid}); stopping it first`,
    );
    expect(leftover.exitCode !== null || leftover.signalCode !== null).toBe(true);
    process.kill(-run.child.pid!, 'SIGINT');
    await exitOf(run.child);
    await stack.expectNothingLeft();
  }, 300_000);
});
