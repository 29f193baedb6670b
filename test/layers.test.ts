/**
 * One home per concept, and imports that only point down (issue 13). Every
 * relative import of functions/ is read from the sources with a regex, and a
 * file may import only what sits in a lower layer or in its own. The layers,
 * from the top:
 *
 *   6    cli/                       the command line; runs the app, the server or the model fetcher
 *   5    app.ts, server.ts, index.ts  the process's entries: server.ts and index.ts wrap app.ts
 *   4    handlers/, access/         the HTTP handlers, and the caller checks app.ts wraps them in;
 *                                   side by side, so neither imports the other
 *   3.5  http.ts                    the express plumbing both of them share; above request/ because
 *                                   its log line redacts the URL by request's parameter names
 *   3    request/                   parameters and image sources, made into RemovalOptions
 *   3    storage/                   the Cloud Storage calls of the storage function: beside
 *                                   request/, as the other way an image comes in; neither imports the other
 *   2    pipeline/                  decode → … → encode, and the types its stages hand on
 *   1.5  config.ts                  beside the layers: it checks MODEL against the registry, so it
 *                                   sits just above model/; all that is above may read it, and
 *                                   model/ takes the few settings it needs as plain objects
 *   1    model/                     registry, weights, sessions, the holder, the tensors they run
 *   0    errors.ts, log.ts, paths.ts  imported by anything, importing nothing of the project
 *
 * demo/ is static files and openapi.json a document, both read from disk by
 * server.ts, never imported. Outside functions/, only models/ (the registry's
 * JSON) may be imported: never scripts/, bench/, tools/ or test/, which are
 * not uploaded. A new folder or top-level file fails here until it is given a
 * rank, so that its place is decided rather than drifted into.
 *
 * The same reading checks that no benchmark, tool or test imports a script
 * that package.json runs: importing an entry runs it, or needs a guard that
 * hides what it shares. And that what benchmarks and tools share with the
 * tests lives in tools/lib/, which imports only functions/ and itself: they
 * never reach into test/, so test/ holds what only tests use.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../functions/paths';
import { projectFiles } from './support/files';

interface Layer {
  name: string;
  rank: number;
}

const LAYERS: Readonly<Record<string, Layer>> = {
  cli: { name: 'cli/', rank: 6 },
  app: { name: 'entry', rank: 5 },
  server: { name: 'entry', rank: 5 },
  index: { name: 'entry', rank: 5 },
  handlers: { name: 'handlers/', rank: 4 },
  access: { name: 'access/', rank: 4 },
  http: { name: 'http.ts', rank: 3.5 },
  request: { name: 'request/', rank: 3 },
  storage: { name: 'storage/', rank: 3 },
  pipeline: { name: 'pipeline/', rank: 2 },
  config: { name: 'config.ts', rank: 1.5 },
  model: { name: 'model/', rank: 1 },
  errors: { name: 'base', rank: 0 },
  log: { name: 'base', rank: 0 },
  paths: { name: 'base', rank: 0 },
};

/** Folders under functions/ that hold no TypeScript. */
const NOT_CODE = new Set(['demo']);

function sourcesUnder(folder: string): string[] {
  return projectFiles(folder).filter((file) => file.endsWith('.ts'));
}

const IMPORT_PATTERNS = [
  // import x from '…', import type { A, B } from '…' (over several lines), export { A } from '…'
  /^\s*(?:import|export)\s+(?:type\s+)?[\w*{}\s,]+?\s+from\s+'([^']+)'/gm,
  // import '…' for its side effects
  /^\s*import\s+'([^']+)'/gm,
  // await import('…'), require('…')
  /\b(?:import|require)\(\s*'([^']+)'\s*\)/g,
];

/** The project files `file` imports, as paths from the root; packages and node: modules are left out. */
function relativeImports(file: string): string[] {
  const source = readFileSync(path.join(PROJECT_ROOT, file), 'utf8');
  const targets: string[] = [];
  for (const pattern of IMPORT_PATTERNS) {
    for (const match of source.matchAll(pattern)) {
      const specifier = match[1]!;
      if (!specifier.startsWith('.')) continue;
      const base = path.join(path.dirname(file), specifier);
      const found = [`${base}.ts`, path.join(base, 'index.ts'), base].find((candidate) => existsSync(path.join(PROJECT_ROOT, candidate)));
      assert.ok(found, `${file} imports ${specifier}, which is not a file`);
      targets.push(found.split(path.sep).join('/'));
    }
  }
  return targets;
}

/** functions/pipeline/removal.ts → pipeline; functions/http.ts → http. */
function layerOf(file: string): Layer {
  const [, first = ''] = file.split('/');
  const key = first.replace(/\.ts$/, '');
  const layer = LAYERS[key];
  assert.ok(layer, `${file} has no layer: give functions/${first} a rank in test/layers.test.ts`);
  return layer;
}

test('every file under functions/ has a rank, and the ranks follow the target order', () => {
  const entries = readdirSync(path.join(PROJECT_ROOT, 'functions'), { withFileTypes: true });
  const code = entries.filter((entry) => (entry.isDirectory() ? !NOT_CODE.has(entry.name) : entry.name.endsWith('.ts')));
  for (const entry of code) layerOf(`functions/${entry.name}`);
  const order = ['cli', 'app', 'handlers', 'request', 'pipeline', 'model', 'errors'].map((key) => LAYERS[key]!.rank);
  assert.deepEqual(
    order,
    [...order].sort((a, b) => b - a),
    'cli → server/app → handlers → request → pipeline → model → errors/log',
  );
  for (const folder of NOT_CODE) assert.deepEqual(sourcesUnder(`functions/${folder}`), [], `functions/${folder} holds no code`);
});

test('functions/ imports only downwards, or within its own layer', () => {
  const upward: string[] = [];
  for (const file of sourcesUnder('functions')) {
    const from = layerOf(file);
    for (const target of relativeImports(file)) {
      if (!target.startsWith('functions/')) continue;
      const to = layerOf(target);
      if (to.name !== from.name && to.rank >= from.rank) upward.push(`${file} (${from.name}, ${from.rank}) → ${target} (${to.name}, ${to.rank})`);
    }
  }
  assert.deepEqual(upward, []);
});

test('functions/ imports nothing outside it but the model registry in models/', () => {
  const outside = sourcesUnder('functions').flatMap((file) =>
    relativeImports(file)
      .filter((target) => !target.startsWith('functions/') && !target.startsWith('models/'))
      .map((target) => `${file} → ${target}`),
  );
  assert.deepEqual(outside, []);
});

test('no benchmark, tool or test imports a script that package.json runs', () => {
  const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const entries = new Set(
    Object.values(manifest.scripts).flatMap((script) => [...script.matchAll(/\bnode dist\/((?:bench|tools)\/[\w-]+)\.js\b/g)].map((match) => `${match[1]!}.ts`)),
  );
  assert.ok(entries.has('bench/bench.ts') && entries.has('tools/load.ts'), 'the scripts were read');
  for (const entry of entries) assert.ok(existsSync(path.join(PROJECT_ROOT, entry)), `package.json runs ${entry}, which exists`);
  const importers = ['bench', 'tools', 'test'].flatMap(sourcesUnder).flatMap((file) =>
    relativeImports(file)
      .filter((target) => entries.has(target))
      .map((target) => `${file} → ${target}`),
  );
  assert.deepEqual(importers, []);
});

test('benchmarks and tools import nothing from test/; tools/lib/ imports only functions/, models/ and itself', () => {
  const intoTests = ['bench', 'tools'].flatMap(sourcesUnder).flatMap((file) =>
    relativeImports(file)
      .filter((target) => target.startsWith('test/'))
      .map((target) => `${file} → ${target}`),
  );
  assert.deepEqual(intoTests, []);
  const library = sourcesUnder('tools/lib');
  assert.ok(library.includes('tools/lib/http.ts'), 'the library was read');
  const outside = library.flatMap((file) =>
    relativeImports(file)
      .filter((target) => !['functions/', 'models/', 'tools/lib/'].some((folder) => target.startsWith(folder)))
      .map((target) => `${file} → ${target}`),
  );
  assert.deepEqual(outside, []);
});
