import { describe, expect, it } from 'vitest';
import { CircuitOpenError, createCircuitBreaker } from './circuitBreaker.js';

describe('createCircuitBreaker', () => {
  const failing = () => Promise.reject(new Error('down'));

  it('opens after consecutive failures, then lets one trial through after the reset time', async () => {
    let now = 0;
    const breaker = createCircuitBreaker({ failureThreshold: 3, resetAfterMs: 1_000, now: () => now });
    for (let attempt = 0; attempt < 3; attempt += 1) {
      await expect(breaker.run(failing)).rejects.toThrow('down');
    }
    expect(breaker.isOpen()).toBe(true);
    let called = false;
    await expect(breaker.run(async () => (called = true))).rejects.toBeInstanceOf(CircuitOpenError);
    expect(called).toBe(false);

    now = 1_000;
    let releaseTrial: () => void = () => {};
    const trial = breaker.run(() => new Promise<string>((resolve) => (releaseTrial = () => resolve('ok'))));
    // While the trial is out, others are still refused.
    await expect(breaker.run(async () => 'other')).rejects.toBeInstanceOf(CircuitOpenError);
    releaseTrial();
    await expect(trial).resolves.toBe('ok');
    expect(breaker.isOpen()).toBe(false);
  });

  it('re-opens when the trial fails', async () => {
    let now = 0;
    const breaker = createCircuitBreaker({ failureThreshold: 1, resetAfterMs: 100, now: () => now });
    await expect(breaker.run(failing)).rejects.toThrow();
    now = 150;
    await expect(breaker.run(failing)).rejects.toThrow('down');
    expect(breaker.isOpen()).toBe(true);
  });

  it('resets the count on success', async () => {
    const breaker = createCircuitBreaker({ failureThreshold: 2 });
    await expect(breaker.run(failing)).rejects.toThrow();
    await breaker.run(async () => 1);
    await expect(breaker.run(failing)).rejects.toThrow();
    expect(breaker.isOpen()).toBe(false);
  });
});
