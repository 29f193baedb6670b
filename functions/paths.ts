import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Where the project sits on disk, at the bottom layer beside errors.ts and
 * log.ts, so that the app, the server, config, the CLI, the benchmarks and
 * the tests can all find it without importing the model registry. Compiled
 * to dist/functions/paths.js, two levels below the root.
 */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
/** The models directory when MODELS_DIR is unset: the weights `models fetch` writes beside models/registry.json. */
export const DEFAULT_MODELS_DIR = path.join(PROJECT_ROOT, 'models');

/** package.json's version: health reports it, and `detourage --version` prints it. */
export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}
