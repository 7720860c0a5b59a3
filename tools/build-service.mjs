#!/usr/bin/env node
/**
 * Builds the service in the working directory for production (the Nx `build`
 * target and `npm start`: `node ../../tools/build-service.mjs`): see
 * buildServiceIfStale. A bundle newer than everything it was built from is
 * kept as it is. Running bundles rather than compiling on the fly (tsx) saves
 * memory and start time, and is what a container runs.
 */
import { basename } from 'node:path';
import { buildServiceIfStale } from './bundle.mjs';

if (await buildServiceIfStale(process.cwd())) {
  process.stdout.write(`[build] ${basename(process.cwd())}: bundled\n`);
}
