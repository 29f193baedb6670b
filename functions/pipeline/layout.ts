import { ApiError, invalidParameter } from '../errors';
import { splitRgba } from './interleave';
import { shadowReach } from './shadow';
import { sharp } from './sharp';
import { describeSize, megapixels } from './size';
import type { AlphaMask, Box, RgbImage } from './types';

/** A distance in pixels of the image as uploaded, or a percentage of a reference length. */
export interface Length {
  value: number;
  unit: 'px' | '%';
}

export interface Sides {
  top: Length;
  right: Length;
  bottom: Length;
  left: Length;
}

/** remove.bg's region of interest: corners (x1, y1) and (x2, y2); % is of the image's width or height. */
export interface Roi {
  x1: Length;
  y1: Length;
  x2: Length;
  y2: Length;
}

/** Where the subject goes on the canvas: 0 is flush left (top), 1 flush right (bottom). */
export interface Placement {
  x: number;
  y: number;
}

export interface LayoutOptions {
  roi: Roi | null;
  crop: boolean;
  /** % is of the subject's height (top, bottom) or width (left, right). */
  cropMargin: Sides;
  /** The subject's share of the canvas, fitted inside it; null leaves its size alone. */
  scale: number | null;
  /** null leaves the subject where it was. */
  position: Placement | null;
  /** A drop shadow will be cast (shadow.ts): `crop` keeps room for it. */
  shadow: boolean;
}

export interface LaidOut {
  image: RgbImage;
  mask: AlphaMask;
  /** The subject's box on the output canvas, or null when nothing is opaque enough to count. */
  foreground: Box | null;
}

/**
 * Alpha at or above this counts as subject for `crop` and the foreground box.
 * The model leaves faint haze (alpha 1–10) over plain backgrounds, which no
 * one would call part of the subject, and which would otherwise stretch the
 * box to the image edges.
 */
export const FOREGROUND_ALPHA_THRESHOLD = 16;

export function foregroundBox(mask: AlphaMask): Box | null {
  const { width, height, alpha } = mask;
  let top = height;
  let bottom = -1;
  let left = width;
  let right = -1;
  for (let y = 0; y < height; y += 1) {
    const row = y * width;
    let first = -1;
    for (let x = 0; x < width; x += 1) {
      if (alpha[row + x]! >= FOREGROUND_ALPHA_THRESHOLD) {
        first = x;
        break;
      }
    }
    if (first < 0) continue;
    let last = first;
    for (let x = width - 1; x > first; x -= 1) {
      if (alpha[row + x]! >= FOREGROUND_ALPHA_THRESHOLD) {
        last = x;
        break;
      }
    }
    if (y < top) top = y;
    bottom = y;
    if (first < left) left = first;
    if (last > right) right = last;
  }
  return bottom < 0 ? null : { left, top, width: right - left + 1, height: bottom - top + 1 };
}

/** Pixels of the processed image; `px` lengths were given on the image as uploaded. */
function toPixels(length: Length, reference: number, pixelScale: number): number {
  return length.unit === '%' ? (length.value / 100) * reference : length.value * pixelScale;
}

/** Nothing outside the region may be foreground, so its alpha goes to zero. */
function applyRoi(mask: AlphaMask, roi: Roi, pixelScale: number): void {
  const { width, height, alpha } = mask;
  const clampX = (length: Length): number => Math.min(width, Math.max(0, Math.round(toPixels(length, width, pixelScale))));
  const clampY = (length: Length): number => Math.min(height, Math.max(0, Math.round(toPixels(length, height, pixelScale))));
  const [x1, x2, y1, y2] = [clampX(roi.x1), clampX(roi.x2), clampY(roi.y1), clampY(roi.y2)];
  if (x2 <= x1 || y2 <= y1) {
    throw invalidParameter('roi', `The roi is empty on this ${width}x${height} image: x2 must exceed x1 and y2 exceed y1.`);
  }
  for (let y = 0; y < height; y += 1) {
    const row = y * width;
    if (y < y1 || y >= y2) {
      alpha.fill(0, row, row + width);
    } else {
      alpha.fill(0, row, row + x1);
      alpha.fill(0, row + x2, row + width);
    }
  }
}

interface Layer {
  width: number;
  height: number;
  rgb: Buffer;
  alpha: Buffer;
}

/** Copies `source` (the part inside `from`) onto `target` at (x, y), clipped to both. */
function blit(source: Layer, from: Box, target: Layer, x: number, y: number): void {
  const left = Math.max(from.left, from.left - x, 0);
  const top = Math.max(from.top, from.top - y, 0);
  const right = Math.min(from.left + from.width, source.width, target.width - x + from.left);
  const bottom = Math.min(from.top + from.height, source.height, target.height - y + from.top);
  if (right <= left) return;
  for (let row = top; row < bottom; row += 1) {
    const sourceStart = row * source.width + left;
    const targetStart = (row - from.top + y) * target.width + (left - from.left + x);
    source.alpha.copy(target.alpha, targetStart, sourceStart, sourceStart + right - left);
    source.rgb.copy(target.rgb, targetStart * 3, sourceStart * 3, (sourceStart + right - left) * 3);
  }
}

function emptyLayer(width: number, height: number): Layer {
  return { width, height, rgb: Buffer.alloc(width * height * 3), alpha: Buffer.alloc(width * height) };
}

/**
 * Resizes the subject with premultiplied alpha (sharp premultiplies RGBA), so
 * no background colour bleeds into its edge.
 */
async function resizeSubject(source: Layer, box: Box, width: number, height: number): Promise<Layer> {
  const region = Buffer.allocUnsafe(box.width * box.height * 4);
  for (let y = 0, target = 0; y < box.height; y += 1) {
    for (let x = 0, pixel = (box.top + y) * source.width + box.left; x < box.width; x += 1, pixel += 1, target += 4) {
      region[target] = source.rgb[pixel * 3]!;
      region[target + 1] = source.rgb[pixel * 3 + 1]!;
      region[target + 2] = source.rgb[pixel * 3 + 2]!;
      region[target + 3] = source.alpha[pixel]!;
    }
  }
  const resized = await sharp(region, { raw: { width: box.width, height: box.height, channels: 4 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { width, height, ...splitRgba(resized, width * height) };
}

/**
 * The subject's box and its margin; with a shadow, each side at least as far
 * out as the shadow reaches, so that crop does not cut it off. A margin wider
 * than the shadow is kept as asked.
 */
function croppedCanvas(box: Box, margin: Sides, pixelScale: number, shadow: boolean): Box {
  const reach = shadow ? shadowReach(box) : { top: 0, right: 0, bottom: 0, left: 0 };
  const top = Math.max(reach.top, Math.round(toPixels(margin.top, box.height, pixelScale)));
  const bottom = Math.max(reach.bottom, Math.round(toPixels(margin.bottom, box.height, pixelScale)));
  const left = Math.max(reach.left, Math.round(toPixels(margin.left, box.width, pixelScale)));
  const right = Math.max(reach.right, Math.round(toPixels(margin.right, box.width, pixelScale)));
  return { left: box.left - left, top: box.top - top, width: box.width + left + right, height: box.height + top + bottom };
}

/**
 * roi, then crop (with its margin), then scale and position, as remove.bg
 * applies them. `pixelScale` converts px lengths from the uploaded image to
 * the processed one, which `size` may have made smaller.
 */
export async function layout(image: RgbImage, mask: AlphaMask, options: LayoutOptions, pixelScale = 1, maxCanvasPixels = Infinity): Promise<LaidOut> {
  if (options.roi) applyRoi(mask, options.roi, pixelScale);
  const box = foregroundBox(mask);
  const moves = options.crop || options.scale !== null || options.position !== null;
  if (!moves) return { image, mask, foreground: box };
  if (!box) {
    throw new ApiError('no_foreground', 'No subject was found in the image, so it cannot be cropped, scaled or positioned.');
  }

  const source: Layer = { width: image.width, height: image.height, rgb: image.rgb, alpha: mask.alpha };
  const canvasBox = options.crop ? croppedCanvas(box, options.cropMargin, pixelScale, options.shadow) : { left: 0, top: 0, width: image.width, height: image.height };
  if (canvasBox.width * canvasBox.height > maxCanvasPixels) {
    const size = describeSize(canvasBox.width, canvasBox.height);
    const cause = options.shadow ? 'crop_margin and the room kept for the shadow' : 'crop_margin';
    throw new ApiError('image_too_large', `With this ${cause} the result would be ${size}; the output limit is ${megapixels(maxCanvasPixels)}: lower crop_margin or size.`);
  }
  const canvas = emptyLayer(canvasBox.width, canvasBox.height);

  if (options.scale === null && options.position === null) {
    // A plain crop keeps everything inside the margin, not only the subject's box.
    blit(source, { left: 0, top: 0, width: image.width, height: image.height }, canvas, -canvasBox.left, -canvasBox.top);
  } else {
    let subject = source;
    let subjectBox = box;
    if (options.scale !== null) {
      const fit = Math.min((canvas.width * options.scale) / box.width, (canvas.height * options.scale) / box.height);
      const width = Math.max(1, Math.round(box.width * fit));
      const height = Math.max(1, Math.round(box.height * fit));
      subject = await resizeSubject(source, box, width, height);
      subjectBox = { left: 0, top: 0, width, height };
    }
    const x = options.position ? Math.round((canvas.width - subjectBox.width) * options.position.x) : box.left - canvasBox.left;
    const y = options.position ? Math.round((canvas.height - subjectBox.height) * options.position.y) : box.top - canvasBox.top;
    blit(subject, subjectBox, canvas, x, y);
  }
  const laidOutMask = { width: canvas.width, height: canvas.height, alpha: canvas.alpha };
  return { image: { width: canvas.width, height: canvas.height, rgb: canvas.rgb }, mask: laidOutMask, foreground: foregroundBox(laidOutMask) };
}
