/**
 * Fails when libs/contracts is stale: regenerates the TypeScript and the
 * descriptor set from proto/ into a scratch directory and compares them with
 * what is committed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { buildDescriptorSet, descriptorModuleSource } from './descriptorModule.js';

const root = new URL('..', import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), 'contracts-'));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

try {
  const buf = join(root, 'node_modules/.bin/buf');
  execFileSync(buf, ['generate', '--output', scratch], { cwd: root, stdio: 'inherit' });
  buildDescriptorSet(root, join(scratch, 'clinical.binpb'));
  writeFileSync(
    join(scratch, 'libs/contracts/src/gen/descriptorSet.ts'),
    descriptorModuleSource(readFileSync(join(scratch, 'clinical.binpb'))),
  );

  const committedDir = join(root, 'libs/contracts/src/gen');
  const freshDir = join(scratch, 'libs/contracts/src/gen');
  const committed = files(committedDir).map((path) => relative(committedDir, path)).sort();
  const fresh = files(freshDir).map((path) => relative(freshDir, path)).sort();
  const stale: string[] = [];
  if (committed.join('\n') !== fresh.join('\n')) {
    stale.push(`file list differs: committed [${committed.join(', ')}], generated [${fresh.join(', ')}]`);
  }
  for (const file of fresh) {
    if (committed.includes(file) && !readFileSync(join(committedDir, file)).equals(readFileSync(join(freshDir, file)))) {
      stale.push(`libs/contracts/src/gen/${file}`);
    }
  }
  if (!readFileSync(join(root, 'libs/contracts/descriptor/clinical.binpb')).equals(readFileSync(join(scratch, 'clinical.binpb')))) {
    stale.push('libs/contracts/descriptor/clinical.binpb');
  }
  if (stale.length > 0) {
    console.error(`Generated contracts are stale; run \`npm run proto:generate\` and commit:\n  ${stale.join('\n  ')}`);
    process.exit(1);
  }
  console.log('generated contracts are up to date');
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
