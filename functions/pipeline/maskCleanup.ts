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
