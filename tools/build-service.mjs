#!/usr/bin/env node
/**
 * Builds one service for production: bundles its code and our libraries
 * (TypeScript, @clinical/*) into dist/main.mjs with esbuild, npm packages left
 * external, plus dist/telemetry-register.mjs for `node --import`. Runs from the
 * service's directory (the Nx `build` target): `node ../../tools/build-service.mjs`.
 * Running bundles rather than compiling on the fly (tsx) saves memory and start
 * time, and is what a container runs.
 */
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

const keepNpmPackagesExternal = {
  name: 'external-npm-packages',
  setup(builder) {
    builder.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path.startsWith('@clinical/') ? undefined : { path: args.path, external: true },
    );
  },
};

rmSync('dist', { recursive: true, force: true });
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  plugins: [keepNpmPackagesExternal],
  logLevel: 'warning',
};
await build({ ...common, entryPoints: ['src/main.ts'], outfile: 'dist/main.mjs' });
await build({ ...common, entryPoints: ['../../libs/telemetry/src/register.ts'], outfile: 'dist/telemetry-register.mjs' });
