import assert from 'node:assert/strict';
import { test } from 'node:test';
import { estimateForeground } from '../functions/pipeline/colourEstimation';
import { refineMask } from '../functions/pipeline/refine';
import type { RgbImage } from '../functions/pipeline/types';

const WIDTH = 64;
const HEIGHT = 48;
const EDGE = 32;

/** Dark left half, bright right half: a sharp vertical edge at x = EDGE. */
function splitImage(): RgbImage {
  const rgb = Buffer.alloc(WIDTH * HEIGHT * 3);
  for (let pixel = 0; pixel < WIDTH * HEIGHT; pixel += 1) rgb.fill(pixel % WIDTH >= EDGE ? 220 : 30, pixel * 3, pixel * 3 + 3);
  return { width: WIDTH, height: HEIGHT, rgb };
}

/** A mask whose edge is a ramp 12 pixels wide centred a pixel left of the image's edge, like an upscaled model map. */
function softShiftedMask(): Buffer {
  const alpha = Buffer.alloc(WIDTH * HEIGHT);
  for (let y = 0; y < HEIGHT; y += 1) {
    for (let x = 0; x < WIDTH; x += 1) alpha[y * WIDTH + x] = Math.round(255 * Math.min(1, Math.max(0, (x - (EDGE - 1) + 6) / 12)));
  }
  return alpha;
}

/** Mean |mask − the image's own edge| over the middle row, in [0,1]. */
function edgeError(alpha: Buffer): number {
  let sum = 0;
  const row = (HEIGHT / 2) * WIDTH;
  for (let x = 0; x < WIDTH; x += 1) sum += Math.abs(alpha[row + x]! - (x >= EDGE ? 255 : 0));
  return sum / WIDTH / 255;
}

test('refineMask pulls a soft, offset mask edge toward the image edge', () => {
  const alpha = softShiftedMask();
  const refined = refineMask(splitImage(), { width: WIDTH, height: HEIGHT, alpha }, { radius: 6, epsilon: 1e-4, subsample: 1, binarise: true, bandOnly: true });
  assert.equal(refined.alpha.length, WIDTH * HEIGHT);
  const before = edgeError(alpha);
  const after = edgeError(refined.alpha);
  assert.ok(after < before / 2, `edge error ${after} is not well under ${before}`);
});

test('refineMask on a coarse grid (fast guided filter) still improves the edge', () => {
  const alpha = softShiftedMask();
  const refined = refineMask(splitImage(), { width: WIDTH, height: HEIGHT, alpha }, { radius: 8, epsilon: 1e-4, subsample: 2, binarise: true, bandOnly: true });
  assert.ok(edgeError(refined.alpha) < edgeError(alpha));
});

test('refineMask leaves a constant mask alone', () => {
  const alpha = Buffer.alloc(WIDTH * HEIGHT, 255);
  const refined = refineMask(splitImage(), { width: WIDTH, height: HEIGHT, alpha });
  assert.ok(refined.alpha.every((value) => value === 255));
});

test('estimateForeground recovers a known foreground colour from a composite', () => {
  const foreground = [200, 40, 60];
  // The background varies, so the estimate cannot just subtract a constant.
  const background = (x: number, y: number): number[] => [20 + x, 160, 60 + y];
  const rgb = Buffer.alloc(WIDTH * HEIGHT * 3);
  const alpha = Buffer.alloc(WIDTH * HEIGHT);
  for (let y = 0; y < HEIGHT; y += 1) {
    for (let x = 0; x < WIDTH; x += 1) {
      const pixel = y * WIDTH + x;
      // Opaque subject on the left, a 16-pixel soft edge, transparent on the right.
      const a = Math.round(255 * Math.min(1, Math.max(0, (40 - x) / 16)));
      alpha[pixel] = a;
      const back = background(x, y);
      for (let channel = 0; channel < 3; channel += 1) rgb[pixel * 3 + channel] = Math.round((foreground[channel]! * a + back[channel]! * (255 - a)) / 255);
    }
  }
  const estimated = estimateForeground({ width: WIDTH, height: HEIGHT, rgb }, alpha);
  let naiveError = 0;
  let estimatedError = 0;
  let weight = 0;
  for (let pixel = 0; pixel < WIDTH * HEIGHT; pixel += 1) {
    const a = alpha[pixel]!;
    if (a === 0 || a === 255) {
      if (a === 255) assert.deepEqual([...estimated.subarray(pixel * 3, pixel * 3 + 3)], [...rgb.subarray(pixel * 3, pixel * 3 + 3)]);
      continue;
    }
    for (let channel = 0; channel < 3; channel += 1) {
      naiveError += (a / 255) * Math.abs(rgb[pixel * 3 + channel]! - foreground[channel]!);
      estimatedError += (a / 255) * Math.abs(estimated[pixel * 3 + channel]! - foreground[channel]!);
    }
    weight += (3 * a) / 255;
  }
  naiveError /= weight;
  estimatedError /= weight;
  assert.ok(estimatedError < naiveError / 4, `estimate error ${estimatedError} against ${naiveError} for the image's own colours`);
  assert.ok(estimatedError < 8, `estimate error ${estimatedError} levels`);
});
