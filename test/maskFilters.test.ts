import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cleanMask } from '../functions/pipeline/maskFilters';

const SIZE = 24;

/** A filled square from (8,8) to (17,17) on transparent. */
function squareMask(): Buffer {
  const alpha = Buffer.alloc(SIZE * SIZE);
  for (let y = 8; y < 18; y += 1) alpha.fill(255, y * SIZE + 8, y * SIZE + 18);
  return alpha;
}

test('cleanMask removes an isolated speck', () => {
  const alpha = squareMask();
  alpha[2 * SIZE + 2] = 255;
  alpha[2 * SIZE + 3] = 255;
  const cleaned = cleanMask({ width: SIZE, height: SIZE, alpha }).alpha;
  assert.equal(cleaned[2 * SIZE + 2], 0);
  assert.equal(cleaned[2 * SIZE + 3], 0);
  assert.equal(cleaned[12 * SIZE + 12], 255);
});

test('cleanMask fills a pinhole', () => {
  const alpha = squareMask();
  alpha[12 * SIZE + 12] = 0;
  const cleaned = cleanMask({ width: SIZE, height: SIZE, alpha }).alpha;
  assert.equal(cleaned[12 * SIZE + 12], 255);
});

test('cleanMask gives a binary mask that keeps a large shape in place', () => {
  const alpha = squareMask();
  // A soft edge on one side, as the model gives.
  for (let y = 8; y < 18; y += 1) alpha[y * SIZE + 18] = 100;
  const cleaned = cleanMask({ width: SIZE, height: SIZE, alpha }).alpha;
  assert.ok(cleaned.every((value) => value === 0 || value === 255));
  assert.equal(cleaned[12 * SIZE + 8], 255);
  assert.equal(cleaned[12 * SIZE + 17], 255);
  assert.equal(cleaned[12 * SIZE + 7], 0);
  assert.equal(cleaned[12 * SIZE + 19], 0);
});

test('cleanMask copes with a one-pixel mask', () => {
  assert.deepEqual(cleanMask({ width: 1, height: 1, alpha: Buffer.from([200]) }).alpha, Buffer.from([255]));
});
