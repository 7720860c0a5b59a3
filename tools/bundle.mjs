/**
 * Bundles TypeScript for Node with esbuild, our code (TypeScript, @clinical/*)
 * inside and npm packages left external, and skips the work when the bundle
 * is fresh: every file it was built from (esbuild's metafile, kept beside the
 * bundle) and the build tooling itself are older than it. A restart with
 * nothing changed then costs a few stat calls instead of a build.
 */
import { build } from 'esbuild';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const TOOLING = [fileURLToPath(import.meta.url)];

const keepNpmPackagesExternal = {
  name: 'external-npm-packages',
  setup(builder) {
    builder.onResolve({ filter: /^[^./]/ }, (args) =>
      args.path.startsWith('@clinical/') ? undefined : { path: args.path, external: true },
    );
  },
};

const metafileOf = (outfile) => `${outfile}.inputs.json`;

/** Whether `outfile` is newer than every input it was last built from, and than `extraInputs`. */
function isFresh(outfile, extraInputs = []) {
  const meta = metafileOf(outfile);
  if (!existsSync(outfile) || !existsSync(meta)) {
    return false;
  }
  const builtAt = statSync(outfile).mtimeMs;
  const inputs = JSON.parse(readFileSync(meta, 'utf8'));
  return [...inputs, ...extraInputs, ...TOOLING].every(
    (input) => existsSync(input) && statSync(input).mtimeMs <= builtAt,
  );
}

/**
 * Bundles `entry` into `outfile` (ESM, source maps) unless it is fresh.
 * `extraInputs` are files the bundle depends on without importing them (the
 * script that calls this). Returns whether it built.
 */
export async function bundleIfStale({ entry, outfile, extraInputs = [] }) {
  if (isFresh(outfile, extraInputs)) {
    return false;
  }
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: true,
    plugins: [keepNpmPackagesExternal],
    logLevel: 'warning',
    metafile: true,
    write: false,
  });
  // esbuild names inputs relative to the working directory. Each input's package.json counts too:
  // its exports and sideEffects decide what the bundle holds.
  const inputs = Object.keys(result.metafile.inputs).map((input) => resolve(input));
  const manifests = new Set(inputs.map(nearestManifest).filter((manifest) => manifest !== undefined));
  writeAtomically(metafileOf(outfile), JSON.stringify([...inputs, ...manifests]));
  // The bundle last: until it is replaced the old one (or none) is stale, and no one ever runs half a file
  // (several `npm run token` at once each find the bundle stale and build it).
  const [bundle, ...others] = [...result.outputFiles].sort((a, b) => (a.path === outfile ? -1 : b.path === outfile ? 1 : 0));
  for (const file of others) {
    writeAtomically(file.path, file.contents);
  }
  writeAtomically(bundle.path, bundle.contents);
  return true;
}

/** Writes `path` whole or not at all: a reader sees the old file or the new one. */
function writeAtomically(path, contents) {
  mkdirSync(dirname(path), { recursive: true });
  const partial = `${path}.${process.pid}.partial`;
  writeFileSync(partial, contents);
  renameSync(partial, path);
}

/** The package.json of the package a file belongs to. */
function nearestManifest(file) {
  for (let directory = dirname(file); directory !== dirname(directory); directory = dirname(directory)) {
    if (existsSync(join(directory, 'package.json'))) {
      return join(directory, 'package.json');
    }
  }
  return undefined;
}

/**
 * A service's production bundles, in `serviceDir` (apps/<name>): dist/main.mjs,
 * dist/telemetry-register.mjs for `node --import`, and dist/healthcheck.mjs
 * (the image's HEALTHCHECK: grpc health on this machine). Returns whether it built.
 */
export async function buildServiceIfStale(serviceDir) {
  const main = await bundleIfStale({ entry: resolve(serviceDir, 'src/main.ts'), outfile: resolve(serviceDir, 'dist/main.mjs') });
  const register = await bundleIfStale({
    entry: resolve(serviceDir, '../../libs/telemetry/src/register.ts'),
    outfile: resolve(serviceDir, 'dist/telemetry-register.mjs'),
  });
  const healthcheck = await bundleIfStale({
    entry: resolve(serviceDir, '../../libs/server-kit/src/health/healthcheck.ts'),
    outfile: resolve(serviceDir, 'dist/healthcheck.mjs'),
  });
  let workers = false;
  for (const entry of workerEntries(serviceDir)) {
    workers = (await bundleIfStale({ entry, outfile: resolve(serviceDir, 'dist', workerBundleName(entry)) })) || workers;
  }
  return main || register || healthcheck || workers;
}

/**
 * A service's worker threads: each <name>.worker.ts under src/ is its own
 * bundle, dist/<name>.worker.mjs, beside main.mjs (where the code that starts
 * it finds it: `new URL('./<name>.worker.mjs', import.meta.url)`).
 */
export function workerEntries(serviceDir) {
  const source = resolve(serviceDir, 'src');
  return readdirSync(source, { recursive: true })
    .filter((file) => String(file).endsWith('.worker.ts'))
    .map((file) => join(source, String(file)))
    .sort();
}

/** The bundle file of a worker entry: dist/<name>.worker.mjs. */
export function workerBundleName(entry) {
  return basename(entry).replace(/\.ts$/, '.mjs');
}
