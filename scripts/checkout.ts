import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest directory at or above `start` that holds nx.json. */
function workspaceRootAbove(start: string): string {
  for (let directory = start; ; directory = dirname(directory)) {
    if (existsSync(join(directory, 'nx.json'))) {
      return directory;
    }
    if (directory === dirname(directory)) {
      throw new Error(`no nx.json above ${start}`);
    }
  }
}

/**
 * The checkout's root, with a trailing slash: found from this module, so the
 * same from the sources and from their bundles (scripts/dist).
 */
export const ROOT = `${workspaceRootAbove(dirname(fileURLToPath(import.meta.url)))}/`;

/**
 * Where `npm start` keeps its development state (the embedded PostgreSQL's
 * data, the settings `npm run token` reads): DEV_DATA_DIR, or .data in the
 * checkout. With a trailing slash.
 */
export const DATA_DIR = process.env.DEV_DATA_DIR ? `${process.env.DEV_DATA_DIR.replace(/\/$/, '')}/` : `${ROOT}.data/`;
