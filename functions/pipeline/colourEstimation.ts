import { axisWeights, bilinear, boxMean, type CoarseSample, cellIndex, coarseSize, divideByCellArea, locate } from './planes';
import type { RgbImage } from './types';

/**
 * Box radii of the two blur-fusion passes (Forte & Pitié, "Approximate Fast
 * Foreground Colour Estimation", 2021): their reference uses 90- and
 * 6-pixel-wide windows.
 */
const WIDE_RADIUS = 45;
const NARROW_RADIUS = 3;
/** The wide pass only estimates smooth local colours, so it runs on a grid of about this many cells. */
const WIDE_PASS_CELLS = 250_000;
/** The narrow pass runs tile by tile, only where alpha is fractional, so memory stays small at 12 MP. */
const TILE = 64;
const TINY = 1e-5;
/**
 * Alpha within 3% of 0 or 1 is left alone: its colour error is at most 3% of
 * the foreground-background difference, and model masks carry faint values
 * over large areas (a quarter of a 12 MP photo), which would cost most of the time.
 */
const BAND_LOW = 8;
const BAND_HIGH = 247;

/**
 * Foreground colours where alpha is fractional, so a soft edge (hair, fur,
 * motion blur) does not carry the old background's colour onto a new one.
 * Nearly opaque pixels keep the image's colour; nearly transparent ones are
 * left as they are (encode zeroes those at 0).
 *
 * Blur fusion: a pixel is I = αF + (1−α)B; local alpha-weighted means give
 * estimates of F and B around it, and F is corrected so the pixel's own
 * colour is explained. A wide pass estimates the background, a narrow pass
 * refines F with it.
 */
export function estimateForeground(image: RgbImage, alpha: Buffer): Buffer {
  const { width, height, rgb } = image;
  const foreground = Buffer.from(rgb);
  const factor = Math.max(1, Math.ceil(Math.sqrt((width * height) / WIDE_PASS_CELLS)));
  const wide = widePass(image, alpha, factor);
  const columns = axisWeights(width, factor);
  const rows = axisWeights(height, factor);
  const coarseWidth = coarseSize(width, factor);

  const span = TILE + 2 * NARROW_RADIUS;
  const planes = Array.from({ length: 7 }, () => new Float32Array(span * span));
  const [weight, foregroundRed, foregroundGreen, foregroundBlue, backgroundRed, backgroundGreen, backgroundBlue] = planes as [
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
    Float32Array,
  ];
  const weightedForeground = [foregroundRed, foregroundGreen, foregroundBlue];
  const weightedBackground = [backgroundRed, backgroundGreen, backgroundBlue];
  const scratch = new Float32Array(span * span);
  const localForeground = [0, 0, 0];
  const localBackground = [0, 0, 0];
  const at: CoarseSample = { topLeft: 0, topRight: 0, bottomLeft: 0, bottomRight: 0, across: 0, down: 0 };

  for (let tileY = 0; tileY < height; tileY += TILE) {
    for (let tileX = 0; tileX < width; tileX += TILE) {
      const tileBottom = Math.min(tileY + TILE, height);
      const tileRight = Math.min(tileX + TILE, width);
      if (!inBand(alpha, width, tileX, tileY, tileRight, tileBottom)) continue;
      const top = Math.max(tileY - NARROW_RADIUS, 0);
      const left = Math.max(tileX - NARROW_RADIUS, 0);
      const regionWidth = Math.min(tileRight + NARROW_RADIUS, width) - left;
      const regionHeight = Math.min(tileBottom + NARROW_RADIUS, height) - top;

      // The narrow pass's inputs: α, F₁·α and B₁·(1−α), with F₁ and B₁ from the wide pass.
      for (let y = 0; y < regionHeight; y += 1) {
        const imageY = top + y;
        for (let x = 0; x < regionWidth; x += 1) {
          const imageX = left + x;
          const pixel = imageY * width + imageX;
          const local = y * regionWidth + x;
          const a = alpha[pixel]! / 255;
          weight[local] = a;
          if (a === 1) {
            for (let channel = 0; channel < 3; channel += 1) {
              weightedForeground[channel]![local] = rgb[pixel * 3 + channel]! / 255;
              weightedBackground[channel]![local] = 0;
            }
            continue;
          }
          locate(at, coarseWidth, columns, rows, imageX, imageY);
          for (let channel = 0; channel < 3; channel += 1) {
            const background = bilinear(wide.background[channel]!, at);
            weightedBackground[channel]![local] = background * (1 - a);
            if (a === 0) {
              weightedForeground[channel]![local] = 0;
              continue;
            }
            const blurred = bilinear(wide.foreground[channel]!, at);
            const observed = rgb[pixel * 3 + channel]! / 255;
            weightedForeground[channel]![local] = clampUnit(blurred + a * (observed - a * blurred - (1 - a) * background)) * a;
          }
        }
      }
      for (const plane of planes) boxMean(plane, regionWidth, regionHeight, NARROW_RADIUS, plane, scratch);

      for (let imageY = tileY; imageY < tileBottom; imageY += 1) {
        for (let imageX = tileX; imageX < tileRight; imageX += 1) {
          const pixel = imageY * width + imageX;
          const byte = alpha[pixel]!;
          if (byte < BAND_LOW || byte > BAND_HIGH) continue;
          const a = byte / 255;
          const local = (imageY - top) * regionWidth + (imageX - left);
          const blurredWeight = weight[local]!;
          for (let channel = 0; channel < 3; channel += 1) {
            localForeground[channel] = weightedForeground[channel]![local]! / (blurredWeight + TINY);
            localBackground[channel] = weightedBackground[channel]![local]! / (1 - blurredWeight + TINY);
          }
          for (let channel = 0; channel < 3; channel += 1) {
            const observed = rgb[pixel * 3 + channel]! / 255;
            const near = localForeground[channel]!;
            foreground[pixel * 3 + channel] = clampUnit(near + a * (observed - a * near - (1 - a) * localBackground[channel]!)) * 255 + 0.5;
          }
        }
      }
    }
  }
  return foreground;
}

function clampUnit(value: number): number {
  return value < 0 ? 0 : value > 1 ? 1 : value;
}

function inBand(alpha: Buffer, width: number, left: number, top: number, right: number, bottom: number): boolean {
  for (let y = top; y < bottom; y += 1) {
    for (let pixel = y * width + left, end = y * width + right; pixel < end; pixel += 1) {
      const value = alpha[pixel]!;
      if (value >= BAND_LOW && value <= BAND_HIGH) return true;
    }
  }
  return false;
}

/** Alpha-weighted local means of the image as foreground and as background, on the coarse grid, per channel. */
function widePass(image: RgbImage, alpha: Buffer, factor: number): { foreground: Float32Array[]; background: Float32Array[] } {
  const { width, height, rgb } = image;
  const coarseWidth = coarseSize(width, factor);
  const coarseHeight = coarseSize(height, factor);
  const count = coarseWidth * coarseHeight;
  const weight = new Float32Array(count);
  const [redForeground, greenForeground, blueForeground] = [0, 1, 2].map(() => new Float32Array(count)) as [Float32Array, Float32Array, Float32Array];
  const [redBackground, greenBackground, blueBackground] = [0, 1, 2].map(() => new Float32Array(count)) as [Float32Array, Float32Array, Float32Array];
  const foreground = [redForeground, greenForeground, blueForeground];
  const background = [redBackground, greenBackground, blueBackground];
  const columnCells = cellIndex(width, factor);
  // Integer products of bytes here, scaled once per cell below: this loop touches every pixel.
  for (let y = 0; y < height; y += 1) {
    const cellRow = Math.floor(y / factor) * coarseWidth;
    for (let x = 0, pixel = y * width, source = pixel * 3; x < width; x += 1, pixel += 1, source += 3) {
      const cell = cellRow + columnCells[x]!;
      const a = alpha[pixel]!;
      const red = rgb[source]!;
      const green = rgb[source + 1]!;
      const blue = rgb[source + 2]!;
      weight[cell]! += a;
      redForeground[cell]! += red * a;
      greenForeground[cell]! += green * a;
      blueForeground[cell]! += blue * a;
      redBackground[cell]! += red;
      greenBackground[cell]! += green;
      blueBackground[cell]! += blue;
    }
  }
  // Background sums so far are of I; I·(1−α) = I − I·α.
  for (let cell = 0; cell < count; cell += 1) {
    weight[cell]! /= 255;
    for (let channel = 0; channel < 3; channel += 1) {
      const weighted = foreground[channel]![cell]! / (255 * 255);
      foreground[channel]![cell] = weighted;
      background[channel]![cell] = background[channel]![cell]! / 255 - weighted;
    }
  }
  const planes = [weight, ...foreground, ...background];
  divideByCellArea(planes, width, height, factor);
  const radius = Math.max(1, Math.round(WIDE_RADIUS / factor));
  const scratch = new Float32Array(count);
  for (const plane of planes) boxMean(plane, coarseWidth, coarseHeight, radius, plane, scratch);
  for (let cell = 0; cell < count; cell += 1) {
    const blurredWeight = weight[cell]!;
    for (let channel = 0; channel < 3; channel += 1) {
      foreground[channel]![cell]! /= blurredWeight + TINY;
      background[channel]![cell]! /= 1 - blurredWeight + TINY;
    }
  }
  return { foreground, background };
}
