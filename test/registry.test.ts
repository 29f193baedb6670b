import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { findModel, type ModelEntry, modelFilePath, modelNames, parseRegistry, registry } from '../functions/model/registry';

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
    () => parseRegistry(broken((copy) => (copy.models[1]!.sources = [{ kind: 'derived', from: 'isnet-fp32', transform: 'fp16-to-fp32' }]))),
    /isnet-fp32: derived from isnet-fp16, which is itself derived/,
  );
});
