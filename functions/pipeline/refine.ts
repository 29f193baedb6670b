import { axisWeights, boxMean, cellIndex, coarseSize, divideByCellArea, lerpRows } from './planes';
import type { AlphaMask, RgbImage } from './types';

export interface GuidedFilterOptions {
  /** Window radius in full-resolution pixels. */
  radius: number;
  /**
   * Regularisation, in (alpha/guide)² units of [0,1]: where the image's local
   * variance is below it the mask is only smoothed, above it the mask's edge
   * follows the image's.
   */
  epsilon: number;
  /** The box filters run on a grid this many times coarser ("Fast Guided Filter", He & Sun 2015). */
  subsample: number;
  /** Filter the mask thresholded at one half, so the output's softness comes from the image rather than from the model's blur. */
  binarise: boolean;
  /** Change only pixels the model was unsure of (0 < alpha < 255), so the filter's smoothing does not spread past the edge. */
  bandOnly: boolean;
}

/**
 * The model's mask comes from a 1024² map, so its edge is about
 * max(width, height) / 1024 pixels soft. Tuned with `npm run bench:quality`
 * (bench/NOTES.md, issue 5): a window of 2 px per 1024 px of the long side,
 * a small epsilon, the thresholded mask as input and changes confined to the
 * model's uncertain band gave the least error; wider windows and the raw
 * mask as input made every score worse than no refinement.
 */
export function defaultGuidedFilterOptions(width: number, height: number): GuidedFilterOptions {
  const radius = Math.max(1, Math.round((2 * Math.max(width, height)) / 1024));
  return { radius, epsilon: 1e-4, subsample: Math.max(1, Math.round(radius / 4)), binarise: true, bandOnly: true };
}

const RED = 0.299 / 255;
const GREEN = 0.587 / 255;
const BLUE = 0.114 / 255;

/**
 * Guided filter (He, Sun & Tang) with the mask as input and the image's luma
 * as guide: inside each window the output is an affine function of the
 * guide, so a soft or slightly misplaced mask edge snaps to the image's edge.
 * Where the mask is constant over a window the output equals it.
 */
export function refineMask(image: RgbImage, mask: AlphaMask, options: Partial<GuidedFilterOptions> = {}): AlphaMask {
  const { width, height, rgb } = image;
  const { radius, epsilon, subsample, binarise, bandOnly } = { ...defaultGuidedFilterOptions(width, height), ...options };
  const factor = Math.max(1, Math.min(subsample, radius));
  const coarseWidth = coarseSize(width, factor);
  const coarseHeight = coarseSize(height, factor);
  const coarseCount = coarseWidth * coarseHeight;
  const alpha = mask.alpha;

  const meanGuide = new Float32Array(coarseCount);
  const meanMask = new Float32Array(coarseCount);
  const meanProduct = new Float32Array(coarseCount);
  const meanSquare = new Float32Array(coarseCount);
  const columnCells = cellIndex(width, factor);
  for (let y = 0; y < height; y += 1) {
    const cellRow = Math.floor(y / factor) * coarseWidth;
    for (let x = 0, pixel = y * width, source = pixel * 3; x < width; x += 1, pixel += 1, source += 3) {
      const guide = rgb[source]! * RED + rgb[source + 1]! * GREEN + rgb[source + 2]! * BLUE;
      const value = binarise ? (alpha[pixel]! >= 128 ? 1 : 0) : alpha[pixel]! / 255;
      const cell = cellRow + columnCells[x]!;
      meanGuide[cell]! += guide;
      meanMask[cell]! += value;
      meanProduct[cell]! += guide * value;
      meanSquare[cell]! += guide * guide;
    }
  }
  const coarsePlanes = [meanGuide, meanMask, meanProduct, meanSquare];
  divideByCellArea(coarsePlanes, width, height, factor);
  const coarseRadius = Math.max(1, Math.round(radius / factor));
  const scratch = new Float32Array(coarseCount);
  for (const plane of coarsePlanes) boxMean(plane, coarseWidth, coarseHeight, coarseRadius, plane, scratch);

  // meanProduct and meanSquare become the coefficients a and b of q = a·guide + b.
  const slope = meanProduct;
  const offset = meanSquare;
  for (let cell = 0; cell < coarseCount; cell += 1) {
    const guideMean = meanGuide[cell]!;
    const variance = meanSquare[cell]! - guideMean * guideMean;
    const a = (meanProduct[cell]! - guideMean * meanMask[cell]!) / (variance + epsilon);
    slope[cell] = a;
    offset[cell] = meanMask[cell]! - a * guideMean;
  }
  boxMean(slope, coarseWidth, coarseHeight, coarseRadius, slope, scratch);
  boxMean(offset, coarseWidth, coarseHeight, coarseRadius, offset, scratch);

  const columns = axisWeights(width, factor);
  const rows = axisWeights(height, factor);
  const refined = Buffer.allocUnsafe(width * height);
  // Interpolating down the coarse rows once per image row leaves one lerp per coefficient per pixel.
  const slopeRow = new Float32Array(coarseWidth);
  const offsetRow = new Float32Array(coarseWidth);
  for (let y = 0; y < height; y += 1) {
    lerpRows(slope, coarseWidth, rows, y, slopeRow);
    lerpRows(offset, coarseWidth, rows, y, offsetRow);
    for (let x = 0, pixel = y * width, source = pixel * 3; x < width; x += 1, pixel += 1, source += 3) {
      if (bandOnly && (alpha[pixel] === 0 || alpha[pixel] === 255)) {
        refined[pixel] = alpha[pixel]!;
        continue;
      }
      const left = columns.lower[x]!;
      const right = columns.upper[x]!;
      const across = columns.weight[x]!;
      const guide = rgb[source]! * RED + rgb[source + 1]! * GREEN + rgb[source + 2]! * BLUE;
      const a = slopeRow[left]! + (slopeRow[right]! - slopeRow[left]!) * across;
      const b = offsetRow[left]! + (offsetRow[right]! - offsetRow[left]!) * across;
      const value = a * guide + b;
      // A byte store wraps out-of-range values (-1 → 255), so clamp first.
      refined[pixel] = value <= 0 ? 0 : value >= 1 ? 255 : value * 255 + 0.5;
    }
  }
  return { width, height, alpha: refined };
}
