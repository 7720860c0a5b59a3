/** `npm run access:matrix`: writes the authorization matrix the method policies make into SECURITY.md. */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderAccessMatrix, withTable } from './accessMatrix.js';
import { ROOT } from './checkout.js';

const path = join(ROOT, 'SECURITY.md');
writeFileSync(path, withTable(readFileSync(path, 'utf8'), renderAccessMatrix()));
