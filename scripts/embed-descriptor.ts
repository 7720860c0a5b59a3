/** Writes libs/contracts/src/gen/descriptorSet.ts from libs/contracts/descriptor/clinical.binpb. */
import { readFileSync, writeFileSync } from 'node:fs';
import { descriptorModuleSource } from './descriptorModule.js';

const root = new URL('..', import.meta.url).pathname;
const bytes = readFileSync(`${root}libs/contracts/descriptor/clinical.binpb`);
writeFileSync(`${root}libs/contracts/src/gen/descriptorSet.ts`, descriptorModuleSource(bytes));
