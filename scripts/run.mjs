#!/usr/bin/env node
/**
 * Runs one of the scripts beside this file, `node scripts/run.mjs <name>
 * [arguments]`, from its bundle (scripts/dist/<name>.mjs), built first when
 * any of its sources changed. No compiler loads in the process, so a short
 * script answers quickly, and no launcher stands between the terminal and the
 * script: a Ctrl-C reaches the script itself, which stops what it started.
 */
import { fileURLToPath } from 'node:url';
import { bundleIfStale } from '../tools/bundle.mjs';

const SCRIPTS = ['start', 'token', 'migrate', 'devCerts', 'backup', 'restore', 'opsReport', 'seed'];
const [name] = process.argv.splice(2, 1);
if (!SCRIPTS.includes(name)) {
  process.stderr.write(`usage: node scripts/run.mjs <${SCRIPTS.join('|')}> [arguments]\n`);
  process.exit(64);
}
const outfile = fileURLToPath(new URL(`dist/${name}.mjs`, import.meta.url));
await bundleIfStale({ entry: fileURLToPath(new URL(`${name}.ts`, import.meta.url)), outfile, extraInputs: [fileURLToPath(import.meta.url)] });
await import(outfile);
