import type { AlphaMask } from './types';

/**
 * OpenCV's 5-tap Gaussian for sigma 2 in 8-bit fixed point (weights sum to
 * 256), as rembg's GaussianBlur((5, 5), sigmaX=2) uses on 8-bit masks.
 */
const GAUSSIAN = [39, 57, 64, 57, 39] as const;
/** rembg keeps values ≥ 127 after the blur: np.where(mask < 127, 0, 255). */
const THRESHOLD = 127;

/**
 * rembg's `post_process`: a morphological opening with a 3×3 elliptical
 * kernel (in OpenCV that is a cross), a 5×5 Gaussian blur (σ = 2) and a
 * threshold at 127, giving a 0/255 mask. The opening removes specks of one
 * or two pixels; blur plus threshold rounds corners and fills pinholes.
 */
export function cleanMask(mask: AlphaMask): AlphaMask {
  const { width, height } = mask;
  const eroded = erodeCross(mask.alpha, width, height);
  // Dilation is erosion of the complement, so one kernel serves both halves of the opening.
  invertInPlace(eroded);
  const opened = erodeCross(eroded, width, height);
  invertInPlace(opened);
  return { width, height, alpha: blurAndThreshold(opened, width, height) };
}

function invertInPlace(bytes: Buffer): void {
  for (let index = 0; index < bytes.length; index += 1) bytes[index] = 255 - bytes[index]!;
}

/** Minimum over the pixel and its four neighbours; neighbours outside the mask are ignored, as OpenCV's default border does. */
function erodeCross(source: Buffer, width: number, height: number): Buffer {
  const target = Buffer.allocUnsafe(width * height);
  for (let y = 0; y < height; y += 1) {
    const row = y * width;
    const above = y > 0 ? row - width : row;
    const below = y < height - 1 ? row + width : row;
    for (let x = 0; x < width; x += 1) {
      let least = source[row + x]!;
      const left = source[row + (x > 0 ? x - 1 : x)]!;
      const right = source[row + (x < width - 1 ? x + 1 : x)]!;
      const up = source[above + x]!;
      const down = source[below + x]!;
      if (left < least) least = left;
      if (right < least) least = right;
      if (up < least) least = up;
      if (down < least) least = down;
      target[row + x] = least;
    }
  }
  return target;
}

/** Mirror without repeating the edge (OpenCV's BORDER_REFLECT_101): -1 → 1, n → n-2. */
function reflect(index: number, size: number): number {
  if (size === 1) return 0;
  // Twice at most, for masks one or two pixels wide.
  while (index < 0 || index >= size) index = index < 0 ? -index : 2 * size - 2 - index;
  return index;
}

function blurAndThreshold(source: Buffer, width: number, height: number): Buffer {
  const [w0, w1, w2, w3, w4] = GAUSSIAN;
  const horizontal = new Uint16Array(width * height);
  // Each row is copied with two reflected pixels either side, so the inner loop has no border cases.
  const padded = new Uint8Array(width + 4);
  for (let y = 0; y < height; y += 1) {
    const row = y * width;
    padded.set(source.subarray(row, row + width), 2);
    padded[0] = source[row + reflect(-2, width)]!;
    padded[1] = source[row + reflect(-1, width)]!;
    padded[width + 2] = source[row + reflect(width, width)]!;
    padded[width + 3] = source[row + reflect(width + 1, width)]!;
    for (let x = 0; x < width; x += 1) {
      horizontal[row + x] = padded[x]! * w0 + padded[x + 1]! * w1 + padded[x + 2]! * w2 + padded[x + 3]! * w3 + padded[x + 4]! * w4;
    }
  }
  // Both passes scale by 256; rounding the 16-bit fraction away gives the blurred byte.
  const threshold = THRESHOLD * 65536 - 32768;
  const target = Buffer.allocUnsafe(width * height);
  for (let y = 0; y < height; y += 1) {
    const r0 = reflect(y - 2, height) * width;
    const r1 = reflect(y - 1, height) * width;
    const r2 = y * width;
    const r3 = reflect(y + 1, height) * width;
    const r4 = reflect(y + 2, height) * width;
    for (let x = 0; x < width; x += 1) {
      const sum = horizontal[r0 + x]! * w0 + horizontal[r1 + x]! * w1 + horizontal[r2 + x]! * w2 + horizontal[r3 + x]! * w3 + horizontal[r4 + x]! * w4;
      target[r2 + x] = sum >= threshold ? 255 : 0;
    }
  }
  return target;
}

/** Bits of `hardenInterior`'s row pass: the row window holds some foreground, or only foreground. */
const SOME_FOREGROUND = 1;
const ALL_FOREGROUND = 2;

/**
 * `semitransparency=false`: alpha becomes 0 or 255 (thresholded at one half,
 * as `post_process` does) wherever the thresholded matte is the same all
 * over the (2·band+1)² square around a pixel, that is, everywhere farther
 * than `band` pixels from the subject's edge. Within the band the soft edge
 * is kept, so the outline stays antialiased; what goes is translucency
 * inside the subject and faint haze around it, such as a car's windows.
 * In place, with one byte a pixel of flags: the square is separable, so a
 * row pass and a column pass of running counts decide it in O(1) a pixel.
 */
export function hardenInterior(mask: AlphaMask, band: number): AlphaMask {
  const { width, height, alpha } = mask;
  const flags = Buffer.allocUnsafe(width * height);
  for (let y = 0, row = 0; y < height; y += 1, row += width) {
    let count = 0;
    for (let x = 0; x < Math.min(band, width); x += 1) if (alpha[row + x]! >= 128) count += 1;
    for (let x = 0; x < width; x += 1) {
      const add = x + band;
      const remove = x - band - 1;
      if (add < width && alpha[row + add]! >= 128) count += 1;
      if (remove >= 0 && alpha[row + remove]! >= 128) count -= 1;
      const span = Math.min(add, width - 1) - Math.max(x - band, 0) + 1;
      flags[row + x] = (count > 0 ? SOME_FOREGROUND : 0) | (count === span ? ALL_FOREGROUND : 0);
    }
  }
  // Per column, how many rows of the vertical window have some foreground, and how many only foreground.
  const some = new Int32Array(width);
  const all = new Int32Array(width);
  const tally = (row: number, sign: number): void => {
    for (let x = 0, index = row * width; x < width; x += 1, index += 1) {
      const bits = flags[index]!;
      if (bits & SOME_FOREGROUND) some[x]! += sign;
      if (bits & ALL_FOREGROUND) all[x]! += sign;
    }
  };
  for (let y = 0; y < Math.min(band, height); y += 1) tally(y, 1);
  for (let y = 0; y < height; y += 1) {
    if (y + band < height) tally(y + band, 1);
    if (y - band - 1 >= 0) tally(y - band - 1, -1);
    const span = Math.min(y + band, height - 1) - Math.max(y - band, 0) + 1;
    for (let x = 0, index = y * width; x < width; x += 1, index += 1) {
      if (all[x] === span) alpha[index] = 255;
      else if (some[x] === 0) alpha[index] = 0;
    }
  }
  return mask;
}
