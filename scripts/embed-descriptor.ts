/** Builds libs/contracts/descriptor/clinical.binpb and writes libs/contracts/src/gen/descriptorSet.ts from it. */
import { readFileSync, writeFileSync } from 'node:fs';
import { buildDescriptorSet, descriptorModuleSource } from './descriptorModule.js';

const root = new URL('..', import.meta.url).pathname;
const descriptorFile = `${root}libs/contracts/descriptor/clinical.binpb`;
buildDescriptorSet(root, descriptorFile);
writeFileSync(`${root}libs/contracts/src/gen/descriptorSet.ts`, descriptorModuleSource(readFileSync(descriptorFile)));
