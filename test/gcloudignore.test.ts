/**
 * What `gcloud functions deploy` uploads, and whether Cloud Build can make a
 * working function of that alone. The upload list is .gcloudignore applied to
 * the real tree the way gcloud walks it; the buildpack is then replayed on a
 * copy of exactly those files: `npm ci`, `npm run gcp-build`, `npm prune`, and
 * the functions framework serving the result.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { test } from 'node:test';
import ignore from 'ignore';
import { findModel, modelFilePath } from '../functions/model/registry';
import { PROJECT_ROOT } from '../functions/paths';
import { projectFiles } from './support/files';

/** .gcloudignore with its `#!include:FILE` lines replaced by that file's patterns, as gcloud reads it. */
function gcloudignorePatterns(root: string): string {
  return fs
    .readFileSync(path.join(root, '.gcloudignore'), 'utf8')
    .split('\n')
    .map((line) => {
      const include = /^#\s*!include:(.+)$/.exec(line);
      return include ? fs.readFileSync(path.join(root, include[1]!.trim()), 'utf8') : line;
    })
    .join('\n');
}

/** The files gcloud would upload from root: ignored folders are not entered, like `gcloud meta list-files-for-upload`. */
function uploadList(root: string): string[] {
  const matcher = ignore().add(gcloudignorePatterns(root));
  const files: string[] = [];
  const walk = (relative: string): void => {
    for (const entry of fs.readdirSync(path.join(root, relative), { withFileTypes: true })) {
      const entryPath = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!matcher.ignores(`${entryPath}/`)) walk(entryPath);
      } else if (!matcher.ignores(entryPath)) {
        files.push(entryPath);
      }
    }
  };
  walk('');
  return files.sort();
}

const uploaded = uploadList(PROJECT_ROOT);

test('the upload holds the build step, its inputs and every function source', () => {
  for (const file of ['package.json', 'package-lock.json', '.npmrc', 'tsconfig.json', 'functions/index.ts', 'bin/detourage', 'functions/model/weights.ts', 'functions/model/convertFp32.ts', 'models/registry.json']) {
    assert.ok(uploaded.includes(file), `${file} is uploaded`);
  }
  const manifest = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {
    main: string;
    scripts: Record<string, string>;
  };
  assert.match(manifest.scripts['gcp-build'] ?? '', /npm run build && npm run models:fetch/);
  assert.match(manifest.scripts['models:fetch'] ?? '', /bin\/detourage models fetch/);
  assert.equal(manifest.main, 'dist/functions/index.js');
  const sources = projectFiles('functions');
  assert.deepEqual(
    sources.filter((file) => !uploaded.includes(file)),
    [],
    'every file under functions/ is uploaded',
  );
});

test('the upload leaves out dependencies, build output, weights, tests, fixtures, benchmarks, tools and docs', () => {
  const forbidden: [string, (file: string) => boolean][] = [
    ['node_modules', (file) => file.split('/').includes('node_modules')],
    ['dist/', (file) => file.startsWith('dist/')],
    ['.git', (file) => file.split('/').includes('.git')],
    ['weights', (file) => file.endsWith('.onnx')],
    ['tests', (file) => file.startsWith('test/') || file.includes('.test.')],
    ['fixtures', (file) => file.split('/').includes('fixtures')],
    ['benchmarks or tools', (file) => file.startsWith('bench/') || file.startsWith('tools/')],
    ['docs', (file) => file.startsWith('docs/') || file.endsWith('.md')],
    ['deploy scripts', (file) => file.endsWith('.sh')],
    ['scripts/', (file) => file.startsWith('scripts/')],
  ];
  for (const [what, matches] of forbidden) {
    assert.deepEqual(uploaded.filter(matches), [], `no ${what} in the upload`);
  }
  const bytes = uploaded.reduce((sum, file) => sum + fs.statSync(path.join(PROJECT_ROOT, file)).size, 0);
  assert.ok(bytes < 2 * 1024 * 1024, `the upload is small: ${bytes} bytes`);
});

test('every .gcloudignore path pattern is anchored with a leading slash', () => {
  // gcloud matches a pattern like `models/*` at any depth, where git anchors it to the root.
  const patterns = fs
    .readFileSync(path.join(PROJECT_ROOT, '.gcloudignore'), 'utf8')
    .split('\n')
    .map((line) => line.trim().replace(/^!/, ''))
    .filter((line) => line !== '' && !line.startsWith('#'));
  for (const pattern of patterns) {
    if (pattern.replace(/\/$/, '').includes('/')) assert.ok(pattern.startsWith('/'), pattern);
  }
});

/** The build and runtime environment deploy.sh gives removeBackground, read from its --dry-run. */
function deployedEnvironment(): { build: Record<string, string>; runtime: Record<string, string> } {
  const dryRun = spawnSync(path.join(PROJECT_ROOT, 'scripts', 'deploy.sh'), ['--project=buildpack-simulation', '--dry-run'], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    encoding: 'utf8',
  });
  assert.equal(dryRun.status, 0, dryRun.stderr);
  const line = dryRun.stdout.split('\n').find((command) => command.startsWith('gcloud functions deploy removeBackground '));
  assert.ok(line, dryRun.stdout);
  const variables = (flag: string): Record<string, string> => {
    const value = line.split(' ').find((word) => word.startsWith(`${flag}=`));
    assert.ok(value, `${flag} in ${line}`);
    return Object.fromEntries(value.slice(flag.length + 1).split(',').map((pair) => pair.split('=', 2) as [string, string]));
  };
  return { build: variables('--set-build-env-vars'), runtime: variables('--set-env-vars') };
}

/** This machine's own way out to the registry (a CA bundle, a proxy): Cloud Build has its own. */
const NETWORK_SETTINGS = /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|HTTPS?_PROXY|NO_PROXY)$/i;

/**
 * What a build or serving step sees: the deploy's variables, a shell's basics
 * and the network settings; none of the app settings or npm_* variables of
 * whatever runs this test.
 */
function cleanEnv(variables: Record<string, string>): NodeJS.ProcessEnv {
  const passed = Object.entries(process.env).filter(
    ([name]) => ['PATH', 'HOME', 'TMPDIR', 'LANG'].includes(name) || NETWORK_SETTINGS.test(name),
  );
  return { ...Object.fromEntries(passed), ...variables };
}

function buildStep(workspace: string, env: NodeJS.ProcessEnv, command: string, args: string[]): void {
  const result = spawnSync(command, args, { cwd: workspace, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const output = `${result.stdout}\n${result.stderr}`;
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed:\n${output.slice(-4000)}`);
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

/** Starts the functions framework as the buildpack's launcher does, and waits until it answers. */
async function serveFunction(
  workspace: string,
  env: NodeJS.ProcessEnv,
  target: string,
): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  const port = await freePort();
  const child = spawn(path.join(workspace, 'node_modules', '.bin', 'functions-framework'), [`--target=${target}`], {
    cwd: workspace,
    env: { ...env, PORT: String(port), FUNCTION_TARGET: target },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const url = `http://127.0.0.1:${port}/`;
  for (let attempt = 0; attempt < 200; attempt += 1) {
    assert.equal(child.exitCode, null, `${target} exited:\n${output}`);
    try {
      await fetch(url, { method: 'HEAD', signal: AbortSignal.timeout(1000) });
      return { url, child, output: () => output };
    } catch {
      await delay(100);
    }
  }
  child.kill('SIGKILL');
  assert.fail(`${target} did not answer on ${url}:\n${output}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  await once(child, 'exit');
}

test(
  'the buildpack on the upload alone: npm ci, gcp-build, prune, then the functions serve with the built-in model',
  { timeout: 20 * 60 * 1000 },
  async (t) => {
    const workspace = fs.mkdtempSync(path.join(os.tmpdir(), 'detourage-buildpack-'));
    t.after(() => fs.rmSync(workspace, { recursive: true, force: true }));
    for (const file of uploaded) {
      fs.mkdirSync(path.dirname(path.join(workspace, file)), { recursive: true });
      fs.copyFileSync(path.join(PROJECT_ROOT, file), path.join(workspace, file));
    }
    const deployed = deployedEnvironment();
    const buildEnv = cleanEnv(deployed.build);
    buildStep(workspace, buildEnv, 'npm', ['ci', '--no-audit', '--no-fund']);
    buildStep(workspace, buildEnv, 'npm', ['run', 'gcp-build']);
    // The buildpack's `npm prune --production`, in the spelling current npm takes.
    buildStep(workspace, buildEnv, 'npm', ['prune', '--omit=dev', '--no-audit', '--no-fund']);

    const model = findModel(deployed.runtime.MODEL ?? '');
    assert.ok(model, `deploy's MODEL ${deployed.runtime.MODEL} is in the registry`);
    assert.equal(deployed.build.MODEL, model.name, 'the build fetches the model the runtime serves');
    const weights = modelFilePath(path.join(workspace, 'models'), model);
    assert.equal(fs.statSync(weights).size, model.bytes, `${weights} survives the prune, whole`);
    assert.ok(fs.existsSync(path.join(workspace, 'dist', 'functions', 'index.js')), 'dist/ was built');
    assert.ok(!fs.existsSync(path.join(workspace, 'node_modules', 'typescript')), 'dev dependencies were pruned');

    const runtimeEnv = cleanEnv(deployed.runtime);
    const health = await serveFunction(workspace, runtimeEnv, 'health');
    try {
      const response = await fetch(health.url);
      assert.equal(response.status, 200, health.output());
      assert.equal(((await response.json()) as { status: string }).status, 'ok');
    } finally {
      await stop(health.child);
    }

    // GET warms removeBackground: the model is loaded from the image and runs once.
    const removal = await serveFunction(workspace, runtimeEnv, 'removeBackground');
    try {
      const response = await fetch(removal.url, { signal: AbortSignal.timeout(120_000) });
      const body = (await response.json()) as { status: string; model: string };
      assert.equal(response.status, 200, `${JSON.stringify(body)}\n${removal.output()}`);
      assert.deepEqual([body.status, body.model], ['warm', model.name]);
    } finally {
      await stop(removal.child);
    }
  },
);
