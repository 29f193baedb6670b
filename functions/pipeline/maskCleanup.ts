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
  const eroded = crossFilter(mask.alpha, width, height, Math.min);
  const opened = crossFilter(eroded, width, height, Math.max);
  return { width, height, alpha: blurAndThreshold(opened, width, height) };
}

/**
 * Min (erosion) or max (dilation) over the pixel and its four neighbours.
 * Neighbours outside the mask are ignored, as OpenCV's default border does.
 */
function crossFilter(source: Buffer, width: number, height: number, pick: (a: number, b: number) => number): Buffer {
  const target = Buffer.allocUnsafe(width * height);
  for (let y = 0; y < height; y += 1) {
    const row = y * width;
    const above = y > 0 ? row - width : row;
    const below = y < height - 1 ? row + width : row;
    for (let x = 0; x < width; x += 1) {
      const left = x > 0 ? x - 1 : x;
      const right = x < width - 1 ? x + 1 : x;
      target[row + x] = pick(pick(pick(source[row + x]!, source[row + left]!), pick(source[row + right]!, source[above + x]!)), source[below + x]!);
    }
  }
  return target;
}

/** Mirror without repeating the edge (OpenCV's BORDER_REFLECT_101): -1 → 1, n → n-2. */
function reflect(index: number, size: number): number {
  if (size === 1) return 0;
  if (index < 0) return -index;
  if (index >= size) return 2 * size - 2 - index;
  return index;
}

function blurAndThreshold(source: Buffer, width: number, height: number): Buffer {
  const horizontal = new Uint16Array(width * height);
  const columnTaps = Array.from({ length: width }, (_, x) => [-2, -1, 0, 1, 2].map((offset) => reflect(x + offset, width)));
  for (let y = 0; y < height; y += 1) {
    const row = y * width;
    for (let x = 0; x < width; x += 1) {
      const taps = columnTaps[x]!;
      horizontal[row + x] =
        source[row + taps[0]!]! * GAUSSIAN[0] +
        source[row + taps[1]!]! * GAUSSIAN[1] +
        source[row + taps[2]!]! * GAUSSIAN[2] +
        source[row + taps[3]!]! * GAUSSIAN[3] +
        source[row + taps[4]!]! * GAUSSIAN[4];
    }
  }
  // Both passes scale by 256; rounding the 16-bit fraction away gives the blurred byte.
  const threshold = THRESHOLD * 65536 - 32768;
  const target = Buffer.allocUnsafe(width * height);
  for (let y = 0; y < height; y += 1) {
    const rows = [-2, -1, 0, 1, 2].map((offset) => reflect(y + offset, height) * width);
    const [r0, r1, r2, r3, r4] = rows as [number, number, number, number, number];
    for (let x = 0, pixel = y * width; x < width; x += 1, pixel += 1) {
      const sum =
        horizontal[r0 + x]! * GAUSSIAN[0] +
        horizontal[r1 + x]! * GAUSSIAN[1] +
        horizontal[r2 + x]! * GAUSSIAN[2] +
        horizontal[r3 + x]! * GAUSSIAN[3] +
        horizontal[r4 + x]! * GAUSSIAN[4];
      target[pixel] = sum >= threshold ? 255 : 0;
    }
  }
  return target;
}
