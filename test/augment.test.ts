import assert from 'node:assert/strict';
import { test } from 'node:test';
import { averageMirrored, mirrorInput } from '../functions/pipeline/augment';

/** A CHW tensor whose every value is distinct, so any misplaced value shows. */
function numberedTensor(size: number, planes: number): Float32Array {
  return Float32Array.from({ length: planes * size * size }, (_, index) => index);
}

test('mirrorInput flips each row of each channel and returns a new buffer', () => {
  const input = { size: 3, data: numberedTensor(3, 3) };
  const mirrored = mirrorInput(input);
  assert.notEqual(mirrored.data.buffer, input.data.buffer);
  assert.deepEqual(Array.from(mirrored.data.subarray(0, 3)), [2, 1, 0]);
  assert.deepEqual(Array.from(mirrored.data.subarray(21, 24)), [23, 22, 21]);
});

test('mirroring twice gives the input back', () => {
  const input = { size: 5, data: numberedTensor(5, 3) };
  assert.deepEqual(mirrorInput(mirrorInput(input)).data, input.data);
});

test('averageMirrored un-flips the mirrored map before averaging', () => {
  const plain = { size: 2, data: Float32Array.from([0, 1, 0, 1]) };
  // What the model would say about the mirrored image if it were perfectly consistent.
  const consistent = { size: 2, data: Float32Array.from([1, 0, 1, 0]) };
  assert.deepEqual(Array.from(averageMirrored(plain, consistent).data), [0, 1, 0, 1]);
  const disagreeing = { size: 2, data: Float32Array.from([0, 0, 0, 1]) };
  assert.deepEqual(Array.from(averageMirrored(plain, disagreeing).data), [0, 0.5, 0.5, 0.5]);
});

test('averageMirrored reads only the first map of a longer output', () => {
  const plain = { size: 1, data: Float32Array.from([0.2]) };
  const mirrored = { size: 1, data: Float32Array.from([0.4, 99]) };
  assert.ok(Math.abs(averageMirrored(plain, mirrored).data[0]! - 0.3) < 1e-6);
});
