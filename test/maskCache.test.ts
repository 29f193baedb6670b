/**
 * The mask cache on its own: a bound in bytes that is never passed, least
 * recently used first out, an entry larger than the bound refused, copies in
 * and out, and a key that changes with everything the mask depends on.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { MaskCache, maskKey, type MaskKeyParts } from '../functions/pipeline/maskCache';
import type { ModelMasks } from '../functions/pipeline/passes';

const SIDE = 100;
/** What one SIDE² mask costs the cache under a short key: its bytes, and a little for the entry. */
const ENTRY = SIDE * SIDE;

function mask(fill: number): ModelMasks {
  return { mask: { width: SIDE, height: SIDE, alpha: Buffer.alloc(SIDE * SIDE, fill) }, zoomed: null };
}

test('holds what fits its bound in bytes, entries counted with their overhead', () => {
  const cache = new MaskCache(3 * ENTRY + 3 * 1024);
  for (const name of ['a', 'b', 'c']) assert.equal(cache.set(name, mask(1)), true);
  assert.equal(cache.size, 3);
  assert.ok(cache.bytes > 3 * ENTRY, `overhead is counted: ${cache.bytes}`);
  assert.ok(cache.bytes <= cache.capacityBytes);
  cache.set('d', mask(1));
  assert.equal(cache.size, 3);
  assert.ok(cache.bytes <= cache.capacityBytes);
});

test('evicts the least recently used first, a hit counting as a use', () => {
  const cache = new MaskCache(3 * ENTRY + 3 * 1024);
  for (const name of ['a', 'b', 'c']) cache.set(name, mask(1));
  assert.ok(cache.get('a'));
  cache.set('d', mask(1));
  assert.deepEqual(['a', 'b', 'c', 'd'].map((name) => cache.get(name) !== undefined), [true, false, true, true]);
  // The checks were gets too, in the order a, c, d: a is now the oldest.
  cache.set('e', mask(1));
  assert.deepEqual(['a', 'c', 'd', 'e'].map((name) => cache.get(name) !== undefined), [false, true, true, true]);
});

test('a mask larger than the whole bound is not stored, and evicts nothing', () => {
  // Pixels exactly the bound: the entry's overhead makes it larger.
  const cache = new MaskCache(ENTRY);
  assert.equal(cache.set('small', { mask: { width: 10, height: 10, alpha: Buffer.alloc(100) }, zoomed: null }), true);
  assert.equal(cache.set('large', mask(1)), false);
  assert.equal(cache.get('large'), undefined);
  assert.ok(cache.get('small'));
  assert.equal(cache.size, 1);
});

test('many distinct masks only evict: the bytes held never pass the bound', () => {
  const cache = new MaskCache(5 * ENTRY);
  for (let index = 0; index < 1000; index += 1) {
    cache.set(`image ${index}`, mask(index % 256));
    assert.ok(cache.bytes <= cache.capacityBytes, `${cache.bytes} after ${index + 1}`);
  }
  assert.equal(cache.size, 4);
  assert.equal(cache.get('image 999')?.mask.alpha[0], 999 % 256);
});

test('storing a key again replaces its mask and counts it once', () => {
  const cache = new MaskCache(2 * ENTRY + 2 * 1024);
  cache.set('a', mask(1));
  const bytes = cache.bytes;
  cache.set('a', mask(2));
  assert.deepEqual([cache.size, cache.bytes, cache.get('a')?.mask.alpha[0]], [1, bytes, 2]);
});

test('masks go in and come out as copies: writing to either side changes nothing cached', () => {
  const cache = new MaskCache(4 * ENTRY);
  const stored = mask(7);
  cache.set('a', stored);
  stored.mask.alpha.fill(0);
  const first = cache.get('a')!;
  assert.deepEqual([first.mask.width, first.mask.height, first.mask.alpha[0]], [SIDE, SIDE, 7]);
  first.mask.alpha.fill(9);
  assert.equal(cache.get('a')!.mask.alpha[0], 7);
});

test('a zoomed pass\'s mask and box are kept, counted and copied with the first pass\'s', () => {
  const cache = new MaskCache(4 * ENTRY);
  const box = { left: 10, top: 20, width: 30, height: 40 };
  const stored: ModelMasks = { ...mask(1), zoomed: { box, mask: mask(5).mask } };
  cache.set('a', stored);
  assert.ok(cache.bytes > 2 * ENTRY, `both masks are counted: ${cache.bytes}`);
  stored.zoomed!.mask.alpha.fill(0);
  box.left = 0;
  const back = cache.get('a')!;
  assert.deepEqual([back.zoomed?.box, back.zoomed?.mask.alpha[0]], [{ left: 10, top: 20, width: 30, height: 40 }, 5]);
  assert.equal(new MaskCache(ENTRY + 2048).set('b', stored), false, 'two masks do not fit a bound for one');
});

test('the key is the full SHA-256 of the bytes with the model, quality and working size; each changes it', () => {
  const bytes = Buffer.from('some image bytes');
  const parts: MaskKeyParts = { model: 'isnet-fp32', quality: 'fast', width: 480, height: 360 };
  const key = maskKey(bytes, parts);
  assert.ok(key.includes(createHash('sha256').update(bytes).digest('hex')), key);
  assert.equal(maskKey(Buffer.from('some image bytes'), { ...parts }), key);
  const others = [
    maskKey(Buffer.from('some image bytez'), parts),
    maskKey(bytes, { ...parts, model: 'isnet-fp16' }),
    maskKey(bytes, { ...parts, quality: 'high' }),
    maskKey(bytes, { ...parts, quality: 'auto' }),
    maskKey(bytes, { ...parts, width: 479 }),
    maskKey(bytes, { ...parts, height: 359 }),
  ];
  assert.equal(new Set([key, ...others]).size, 7);
});
