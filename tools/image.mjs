#!/usr/bin/env node
/**
 * `node tools/image.mjs <service|migrate> <dir>`: builds one image's bundles
 * and assembles in `dir` everything its runtime stage needs, and nothing else
 * (the Dockerfile's build stage runs this; its runtime stage copies `dir`):
 * - a service: dist/ (main.mjs, telemetry-register.mjs, healthcheck.mjs, its
 *   worker threads' *.worker.mjs, and their source maps), run from `dir` by the
 *   app's start command;
 * - migrate: scripts/dist/migrate.mjs, db/migrations, and nx.json (by which
 *   the bundle finds its root, scripts/checkout.ts);
 * - node_modules: the npm packages the bundles leave external (tools/bundle.mjs
 *   bundles our code and keeps every npm package out, so that OpenTelemetry's
 *   import hooks can instrument grpc-js, pg and ioredis), with their
 *   production dependencies (dependencies, optional and peer dependencies that
 *   are installed), copied from this checkout's `npm ci` tree: the versions of
 *   package-lock.json, at the same places in the tree, and no development
 *   dependency; without their type declarations and markdown, which nothing runs. Which packages the bundles import, esbuild says (it parses the
 *   bundles), not a list kept by hand.
 */
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildServiceIfStale, bundleIfStale, workerBundleName, workerEntries } from './bundle.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SERVICES = ['patient-svc', 'vitals-svc', 'audit-svc', 'analytics-svc'];
const [target, outArgument] = process.argv.slice(2);
if (!(SERVICES.includes(target) || target === 'migrate') || !outArgument) {
  process.stderr.write(`usage: node tools/image.mjs <${[...SERVICES, 'migrate'].join('|')}> <dir>\n`);
  process.exit(64);
}
const out = resolve(outArgument);
/** Files of a package that nothing runs: type declarations (and their maps) and markdown. */
const NOT_RUN = /\.d\.[cm]?ts(\.map)?$|\.md$/i;

/** The bare package names `bundle` imports (statically or dynamically), as esbuild parses it. */
async function externalPackagesOf(bundle) {
  const result = await build({
    entryPoints: [bundle],
    bundle: true,
    write: false,
    metafile: true,
    platform: 'node',
    format: 'esm',
    logLevel: 'silent',
    plugins: [
      {
        name: 'everything-external',
        setup(builder) {
          builder.onResolve({ filter: /.*/ }, (args) => (args.kind === 'entry-point' ? undefined : { path: args.path, external: true }));
        },
      },
    ],
  });
  const names = new Set();
  for (const output of Object.values(result.metafile.outputs)) {
    for (const { path } of output.imports) {
      if (path.startsWith('node:') || builtinModules.includes(path) || /^[./]/.test(path)) {
        continue;
      }
      names.add(path.startsWith('@') ? path.split('/').slice(0, 2).join('/') : path.split('/')[0]);
    }
  }
  return names;
}

/** Where Node finds package `name` from directory `from`: the nearest node_modules/<name> at or above it, within the checkout. */
function resolvePackage(name, from) {
  for (let directory = from; directory.startsWith(ROOT); directory = dirname(directory)) {
    const candidate = join(directory, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) {
      return candidate;
    }
    if (directory === ROOT) {
      break;
    }
  }
  return undefined;
}

/**
 * Copies `names` (resolved from `from`, the bundle's directory) and their
 * production dependencies into `out`/node_modules, each at its place in the
 * checkout's tree relative to the node_modules it was found in.
 */
function copyPackages(names, from) {
  const placed = new Map(); // place in the image -> source directory
  const pending = [...names].map((name) => ({ name, from, optional: false, by: 'the bundle' }));
  while (pending.length > 0) {
    const { name, from: requester, optional, by } = pending.shift();
    const found = resolvePackage(name, requester);
    if (!found) {
      if (optional) {
        continue;
      }
      throw new Error(`${name} (needed by ${by}) is not installed: run npm ci`);
    }
    if (lstatSync(found).isSymbolicLink() || !realpathSync(found).includes(`${sep}node_modules${sep}`)) {
      throw new Error(`${name} (needed by ${by}) is a workspace package: the bundles should hold it`);
    }
    // The part from the first node_modules on: the same place below the image's root.
    const rel = relative(ROOT, found);
    const place = rel.slice(rel.indexOf('node_modules'));
    if (placed.has(place)) {
      if (placed.get(place) !== found) {
        throw new Error(`${place}: both ${placed.get(place)} and ${found}`);
      }
      continue;
    }
    placed.set(place, found);
    cpSync(found, join(out, place), {
      recursive: true,
      // Its own node_modules holds its dependencies' other versions: copied one by one, as needed.
      // Type declarations and documents are not run: fewer files, a smaller image.
      filter: (source) => relative(found, source).split(sep)[0] !== 'node_modules' && !NOT_RUN.test(source),
    });
    const manifest = JSON.parse(readFileSync(join(found, 'package.json'), 'utf8'));
    const optionalPeers = Object.entries(manifest.peerDependenciesMeta ?? {}).filter(([, meta]) => meta?.optional).map(([peer]) => peer);
    for (const dependency of Object.keys(manifest.dependencies ?? {})) {
      pending.push({ name: dependency, from: found, optional: false, by: manifest.name });
    }
    for (const dependency of Object.keys(manifest.optionalDependencies ?? {})) {
      pending.push({ name: dependency, from: found, optional: true, by: manifest.name });
    }
    for (const dependency of Object.keys(manifest.peerDependencies ?? {})) {
      pending.push({ name: dependency, from: found, optional: optionalPeers.includes(dependency), by: manifest.name });
    }
  }
  return [...placed.keys()].sort();
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
let bundles;
let bundleDir;
if (target === 'migrate') {
  const outfile = join(ROOT, 'scripts/dist/migrate.mjs');
  // As `npm run db:migrate` builds it (scripts/run.mjs).
  await bundleIfStale({ entry: join(ROOT, 'scripts/migrate.ts'), outfile, extraInputs: [join(ROOT, 'scripts/run.mjs')] });
  mkdirSync(join(out, 'scripts/dist'), { recursive: true });
  for (const file of ['migrate.mjs', 'migrate.mjs.map']) {
    cpSync(join(ROOT, 'scripts/dist', file), join(out, 'scripts/dist', file));
  }
  cpSync(join(ROOT, 'db/migrations'), join(out, 'db/migrations'), { recursive: true });
  cpSync(join(ROOT, 'nx.json'), join(out, 'nx.json'));
  bundles = [outfile];
  bundleDir = join(ROOT, 'scripts/dist');
} else {
  const serviceDir = join(ROOT, 'apps', target);
  await buildServiceIfStale(serviceDir);
  const files = ['main.mjs', 'telemetry-register.mjs', 'healthcheck.mjs', ...workerEntries(serviceDir).map(workerBundleName)];
  mkdirSync(join(out, 'dist'), { recursive: true });
  for (const file of files.flatMap((name) => [name, `${name}.map`])) {
    cpSync(join(serviceDir, 'dist', file), join(out, 'dist', file));
  }
  bundles = files.map((file) => join(serviceDir, 'dist', file));
  bundleDir = join(serviceDir, 'dist');
}
const externals = new Set();
for (const bundle of bundles) {
  for (const name of await externalPackagesOf(bundle)) {
    externals.add(name);
  }
}
const packages = copyPackages(externals, bundleDir);
// What the image holds, for `docker run ... cat`: the bundles' imports and every package copied.
writeFileSync(
  join(out, 'node_modules', '.image-packages.json'),
  `${JSON.stringify({ imports: [...externals].sort(), packages: packages.map((place) => `${place.slice('node_modules/'.length)}@${JSON.parse(readFileSync(join(out, place, 'package.json'), 'utf8')).version}`) }, null, 2)}\n`,
);
process.stdout.write(`[image] ${target}: ${externals.size} imported packages, ${packages.length} with their dependencies, in ${out}\n`);
