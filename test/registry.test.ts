import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { findModel, type ModelEntry, modelFilePath, modelNames, modelsReserveMiB, parseRegistry, previewOf, registry } from '../functions/model/registry';

test('the registry ships the npm IS-Net models and the rembg URL models', () => {
  assert.deepEqual(modelNames(), [
    'isnet-fp32',
    'isnet-fp16',
    'isnet-uint8',
    'u2net',
    'u2netp',
    'silueta',
    'isnet-general-use',
    'isnet-anime',
    'birefnet-general',
    'birefnet-general-lite',
    'birefnet-portrait',
    'isnet-preview',
  ]);
  assert.equal(registry.default, 'isnet-fp32');
});

test('the default is derived from isnet-fp16 at fetch time, with its own checksum', () => {
  const fp32 = findModel('isnet-fp32')!;
  assert.deepEqual(fp32.sources, [{ kind: 'derived', from: 'isnet-fp16', transform: 'fp16-to-fp32' }]);
  assert.deepEqual(fp32.checksum, { algorithm: 'sha256', hex: 'c97dd49ba9c78fb9aa065a1fd4d51c304a185c5dc0d0cf44336fc1ab9db09125' });
  assert.equal(fp32.bytes, 176_224_319);
  const network = (entry: ModelEntry) => [entry.inputSize, entry.mean, entry.std, entry.postprocess, entry.input, entry.output, entry.license];
  assert.deepEqual(network(fp32), network(findModel('isnet-fp16')!), 'the same network: the same input, normalisation and output');
});

test('the preview is isnet-fp32 at 512², derived from it at fetch time, with its own checksum', () => {
  const preview = findModel('isnet-preview')!;
  assert.deepEqual(preview.sources, [{ kind: 'derived', from: 'isnet-fp32', transform: 'resize-input' }]);
  assert.deepEqual(preview.checksum, { algorithm: 'sha256', hex: 'f5e85d07641c22b87a06956b5a9926809c9c51e48404e0b33cc2964dd1c44d81' });
  assert.equal(preview.bytes, 176_224_248);
  assert.equal(preview.inputSize, 512);
  assert.equal(preview.previewMaxPixels, 250_000);
  assert.equal(previewOf('isnet-fp32'), preview);
  assert.equal(previewOf('isnet-fp16'), undefined);
  assert.equal(previewOf('isnet-preview'), undefined);
});

test('entries carry checksum, sizes, normalisation and postprocessing as data', () => {
  const fp16 = findModel('isnet-fp16')!;
  assert.deepEqual(fp16.checksum, { algorithm: 'sha256', hex: 'b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb' });
  assert.equal(fp16.bytes, 88_188_479);
  assert.equal(findModel('isnet-uint8')!.bytes, 44_342_436);
  assert.equal(fp16.output, 'output');
  const u2net = findModel('u2net')!;
  assert.equal(u2net.inputSize, 320);
  assert.deepEqual(u2net.mean, [0.485, 0.456, 0.406]);
  assert.deepEqual(u2net.checksum, { algorithm: 'md5', hex: '60024c5c889badc19c04ad937298a77b' });
  assert.equal(findModel('birefnet-general')!.postprocess, 'sigmoid-minmax');
  assert.deepEqual(findModel('isnet-anime')!.std, [1, 1, 1]);
});

test('weights paths come from registry names only', () => {
  assert.equal(modelFilePath('/m', findModel('u2netp')!), path.join('/m', 'u2netp.onnx'));
  assert.equal(findModel('../../etc/passwd'), undefined);
});

test('a malformed registry is refused with the reason', () => {
  const good = JSON.parse(JSON.stringify(registry)) as { default: string; models: Record<string, unknown>[] };
  const broken = (change: (copy: typeof good) => void): unknown => {
    const copy = JSON.parse(JSON.stringify(good)) as typeof good;
    change(copy);
    return copy;
  };
  assert.throws(() => parseRegistry(broken((copy) => (copy.default = 'nope'))), /default nope is not a model/);
  assert.throws(() => parseRegistry(broken((copy) => (copy.models[0]!.name = '../evil'))), /bad model name/);
  assert.throws(() => parseRegistry(broken((copy) => (copy.models[2]!.checksum = { algorithm: 'md5', hex: 'abc' }))), /bad checksum/);
  assert.throws(() => parseRegistry(broken((copy) => (copy.models[1]!.std = [1, 0, 1]))), /bad mean\/std/);
  assert.throws(() => parseRegistry(broken((copy) => copy.models.push(copy.models[0]!))), /duplicate model/);
  assert.throws(() => parseRegistry(broken((copy) => (copy.models[3]!.sources = [{ kind: 'ftp', url: 'x' }]))), /u2net: bad source/);
  assert.throws(() => parseRegistry(broken((copy) => (copy.models[0]!.sources = [{ kind: 'derived', from: 'isnet-fp16', transform: 'magic' }]))), /isnet-fp32: bad source/);
  assert.throws(() => parseRegistry(broken((copy) => (copy.models[0]!.sources = [{ kind: 'derived', from: 'nope', transform: 'fp16-to-fp32' }]))), /derived from nope, which is not a model/);
  assert.throws(
    () => parseRegistry(broken((copy) => (copy.models[1]!.sources = [{ kind: 'derived', from: 'isnet-preview', transform: 'fp16-to-fp32' }]))),
    /derivations loop: isnet-fp32 → isnet-fp16 → isnet-preview → isnet-fp32/,
  );
  // A base that could be downloaded still may not close a loop: its download may fail and the derivation be tried.
  assert.throws(
    () => parseRegistry(broken((copy) => (copy.models[1]!.sources = [...(copy.models[1]!.sources as object[]), { kind: 'derived', from: 'isnet-fp32', transform: 'fp16-to-fp32' }]))),
    /derivations loop: isnet-fp32 → isnet-fp16 → isnet-fp32/,
  );
});

test('the registry refuses a bad resize-input or preview', () => {
  const model = (name: string, copy: { models: Record<string, unknown>[] }): Record<string, unknown> => copy.models.find((entry) => entry.name === name)!;
  const broken = (change: (copy: { models: Record<string, unknown>[] }) => void): unknown => {
    const copy = JSON.parse(JSON.stringify(registry)) as { models: Record<string, unknown>[] };
    change(copy);
    return copy;
  };
  assert.throws(() => parseRegistry(broken((copy) => (model('isnet-preview', copy).inputSize = 1024))), /isnet-preview: resize-input from isnet-fp32 to the same inputSize 1024/);
  assert.throws(() => parseRegistry(broken((copy) => (model('isnet-preview', copy).mean = [0.485, 0.456, 0.406]))), /isnet-preview: resize-input from isnet-fp32 must keep its mean, std, postprocess, input and output/);
  assert.throws(() => parseRegistry(broken((copy) => (model('isnet-preview', copy).previewMaxPixels = 0.25))), /isnet-preview: bad previewMaxPixels/);
  assert.throws(() => parseRegistry(broken((copy) => (model('isnet-fp16', copy).previewMaxPixels = 250_000))), /isnet-fp16: a preview's one source must be a resize-input of its base/);
  assert.throws(
    () => parseRegistry(broken((copy) => (model('isnet-preview', copy).sources = [...(model('isnet-preview', copy).sources as object[]), { kind: 'url', url: 'https://example.com/x.onnx' }]))),
    /isnet-preview: a preview's one source must be a resize-input of its base/,
  );
  assert.throws(() => parseRegistry(broken((copy) => copy.models.push({ ...model('isnet-preview', copy), name: 'isnet-preview-2' }))), /isnet-preview-2: isnet-fp32 already has the preview isnet-preview/);
  assert.throws(() => parseRegistry(broken((copy) => (model('isnet-preview', copy).sources = [{ kind: 'derived', from: 'isnet-fp32', transform: 'resize' }]))), /isnet-preview: bad source/);
});

test('the memory reserve counts a preview companion as loaded beside the others', () => {
  const [fp32, preview, fp16] = ['isnet-fp32', 'isnet-preview', 'isnet-fp16'].map((name) => findModel(name)!) as [ModelEntry, ModelEntry, ModelEntry];
  assert.equal(preview.peakMiB, 650);
  const one = { maxLoadedModels: 1, maxConcurrentInferences: 1, cpuArena: true };
  assert.equal(modelsReserveMiB([fp32], one), 1170);
  // Without a companion the preview is one more model, which MAX_LOADED_MODELS=1 would unload.
  assert.equal(modelsReserveMiB([fp32, preview], one), 1170);
  assert.equal(modelsReserveMiB([fp32, preview], one, [preview]), 1170 + 650);
  // The arena keeps a second loaded model's whole peak; without it, half.
  assert.equal(modelsReserveMiB([fp32, fp16, preview], { ...one, maxLoadedModels: 2 }, [preview]), 1400 + 1400 + 650);
  assert.equal(modelsReserveMiB([fp32, fp16, preview], { ...one, maxLoadedModels: 2, cpuArena: false }, [preview]), 1400 + 1400 / 2 + 650);
});
