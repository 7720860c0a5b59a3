/**
 * Polls `probe` until it returns a value other than undefined, and returns
 * that value; fails after `timeoutMs`. Tests wait on conditions this way,
 * never on fixed sleeps: the bound is generous because a busy machine is slow,
 * and a condition met early ends the wait early.
 */
export async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
