import { register } from 'node:module';
import { createAddHookMessageChannel } from 'import-in-the-middle';

/**
 * Hooks ESM imports (import-in-the-middle) so that instrumentations can patch
 * libraries imported with `import`, not only `require`. Only the modules the
 * instrumentations ask for are wrapped. Call before startTelemetry, then
 * await `ready()` after it, before the application's imports.
 */
export function registerEsmHooks(): { ready(): Promise<void> } {
  const { registerOptions, waitForAllMessagesAcknowledged } = createAddHookMessageChannel();
  register('import-in-the-middle/hook.mjs', import.meta.url, registerOptions);
  return { ready: waitForAllMessagesAcknowledged };
}
