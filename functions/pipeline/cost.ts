import type { ImageHeader } from './decode';
import type { EncodeOptions } from './encode';
import type { LayoutOptions, Length } from './layout';
import { PASS_PLANS, type RemovalOptions } from './options';
import { shadowReach, shadowWorkingBytes } from './shadow';
import { processedSize, type Size } from './size';

/**
 * What one removal may hold in memory at its peak, estimated from the image
 * headers and the options before any pixel is decoded, so that admission can
 * reserve it against the instance's budget (or refuse it) first.
 *
 * Each term is the buffers a stage allocates, in bytes per pixel of the image
 * it works on: P, the processed image (after `size`); C, the output canvas
 * (after crop_margin, scale and position, capped by MAX_OUTPUT_PIXELS); M²,
 * the model's square. The terms are added, not maxed: a stage's buffers are
 * freed by the garbage collector some time after the stage, not at its end.
 * `npm run bench:memory` (bench/calibrate.ts) measures real peaks against them.
 */

/** What the estimate needs to know about the model. */
export interface CostModel {
  inputSize: number;
}

export interface CostInputs {
  image: ImageHeader;
  background: ImageHeader | null;
  options: RemovalOptions;
  model: CostModel;
  /** MAX_OUTPUT_PIXELS: the canvas is refused past this, so no more is ever reserved. */
  maxOutputPixels: number;
  /** The answer is base64 in JSON (`Accept: application/json`). */
  json: boolean;
}

/** The request parameters that the terms are charged to, so a refusal can say which one made it too large. */
export type CostCause = 'image' | 'crop_margin' | 'scale' | 'bg_image' | 'refine' | 'quality' | 'format' | 'semitransparency' | 'shadow_type';

export interface CostEstimate {
  bytes: number;
  /** Bytes charged to each cause; they add up to `bytes`. */
  byCause: Record<CostCause, number>;
  /** The processed image. */
  width: number;
  height: number;
  /** The largest canvas layout can make before MAX_OUTPUT_PIXELS stops it. */
  worstCanvasPixels: number;
  /** The canvas reserved for: `worstCanvasPixels` capped by MAX_OUTPUT_PIXELS. */
  canvasPixels: number;
}

/**
 * The terms are built for the worst case (an opaque subject that fills the
 * frame, incompressible output), so on photos `npm run bench:memory`
 * measures 0.3-0.8 of them (docs/memory.md). This factor is the margin over
 * the worst shape measured, for libvips' working rows and the collector's
 * lag, which no term names.
 */
export const CALIBRATION = 1.1;

const FLOAT = 4;

/** Decoding to raw RGB(A), then splitting off the alpha: `pixels` is what is decoded. */
function decodeBytes(header: ImageHeader, pixels: number): number {
  const turned = header.rotated ? header.width * header.height * 3 : 0;
  return header.bytes + turned + (header.hasAlpha ? pixels * 8 : pixels * 3);
}

/**
 * The canvas `crop` makes around a subject that, at worst, fills the whole
 * image; with `shadow`, each side at least as wide as the shadow's reach, as
 * layout makes it.
 */
function worstCanvas(width: number, height: number, layout: LayoutOptions, pixelScale: number, shadow: boolean): Size {
  if (!layout.crop) return { width, height };
  const reach = shadow ? shadowReach({ width, height }) : { top: 0, right: 0, bottom: 0, left: 0 };
  const along = (length: Length, side: number, least: number): number =>
    Math.max(least, length.unit === '%' ? (length.value / 100) * side : length.value * pixelScale);
  const { top, right, bottom, left } = layout.cropMargin;
  const canvasWidth = width + along(left, width, reach.left) + along(right, width, reach.right);
  const canvasHeight = height + along(top, height, reach.top) + along(bottom, height, reach.bottom);
  return { width: Math.ceil(canvasWidth), height: Math.ceil(canvasHeight) };
}

function area(size: Size): number {
  return size.width * size.height;
}

/**
 * The encoder's input pixels, its working copies and its output, at worst
 * raw-sized. libwebp's are by far the largest: it converts RGBA to its own
 * ARGB picture and YUVA planes and keeps analysis buffers, about 20 bytes a
 * pixel beyond PNG's as measured at 12 and 40 MP.
 */
function encodeBytes(encode: EncodeOptions, flattened: boolean, canvas: number): number {
  const { format, channels } = encode;
  if (channels === 'alpha') return canvas * 2;
  if (format === 'zip') return canvas * (3 + 1 + 3 + 1);
  const working = format === 'webp' ? canvas * 24 : format === 'jpeg' || flattened ? canvas * 4 : 0;
  return canvas * 4 + working + canvas * 4;
}

/** The terms that grow with the canvas, for a canvas of `canvas` pixels. */
type CanvasCause = 'image' | 'crop_margin' | 'scale' | 'bg_image' | 'format';

function canvasTerms(inputs: CostInputs, pixels: number, canvas: number): Record<CanvasCause, number> {
  const { image, background, options, model } = inputs;
  const square = model.inputSize * model.inputSize;
  const moves = options.layout.crop || options.layout.scale !== null || options.layout.position !== null;
  // Decoded pixels; the model's resized copy, input tensor and output map; the mask at full size.
  const modelBytes = square * (3 + 3 * FLOAT + FLOAT + 1);
  const imageBytes = decodeBytes(image, pixels) + (image.hasAlpha ? pixels * 3 : 0) + modelBytes + pixels * 2;
  // A plain PNG of the processed image is the image's own cost; a larger canvas is the layout's, another format the format's.
  const png = (area: number): number => encodeBytes({ ...options.encode, format: 'png' }, false, area);
  const plainArea = Math.min(pixels, canvas);
  // A canvas of RGB and alpha, and (for scale) the subject cut out and resized into RGBA, then split.
  const layoutBytes = moves ? canvas * 4 + (options.layout.scale !== null ? pixels * 4 + canvas * 8 : 0) + png(canvas) - png(plainArea) : 0;
  return {
    image: imageBytes + png(plainArea),
    crop_margin: options.layout.crop ? layoutBytes : 0,
    scale: options.layout.crop ? 0 : layoutBytes,
    bg_image: background ? decodeBytes(background, Math.min(background.width * background.height, pixels)) + canvas * 4 : 0,
    // What the chosen format and a JSON answer's base64 (a string, then its serialised body) add over a plain PNG.
    format: Math.max(0, encodeBytes(options.encode, options.backgroundColour !== null, canvas) - png(canvas)) + (inputs.json ? Math.ceil(((canvas * 4 * 4) / 3) * 2) : 0),
  };
}

/**
 * What `quality`'s passes add to one plain pass: for a mirror average the
 * mirrored input and output and their average; for the zoomed pass the
 * crop (at most the share of the image its plan zooms below), with its own
 * alpha, its resized copy, input and output maps (two for a mirrored zoom),
 * and its mask fitted to the box, merged in place.
 */
function qualityBytes(inputs: CostInputs, pixels: number, square: number): number {
  const plan = PASS_PLANS[inputs.options.quality];
  const mirrored = plan.mirrored ? square * 5 * FLOAT : 0;
  if (plan.zoomBelowShare <= 0) return mirrored;
  const crop = Math.ceil(pixels * Math.min(1, plan.zoomBelowShare));
  const zoomMaps = square * (3 + 3 * FLOAT + FLOAT + 1) + (plan.zoomMirrored ? square * 5 * FLOAT : 0);
  return mirrored + crop * (3 + (inputs.image.hasAlpha ? 2 : 1)) + zoomMaps;
}

function total(terms: Readonly<Record<string, number>>): number {
  return Object.values(terms).reduce((sum, value) => sum + value, 0);
}

export function estimateRemoval(inputs: CostInputs): CostEstimate {
  const { image, options, model } = inputs;
  const { width, height } = processedSize(image, options.maxPixels);
  const pixels = width * height;
  const square = model.inputSize * model.inputSize;
  const pixelScale = width / image.width;
  const shadow = options.shadow !== null;
  const worst = worstCanvas(width, height, options.layout, pixelScale, shadow);
  const worstCanvasPixels = area(worst);
  const canvas = Math.min(worstCanvasPixels, inputs.maxOutputPixels);
  // The canvas without the room crop keeps for a shadow: what is left of the estimate when the shadow is left out.
  const shadowless = Math.min(area(worstCanvas(width, height, options.layout, pixelScale, false)), inputs.maxOutputPixels);
  const terms = canvasTerms(inputs, pixels, shadowless);
  const byCause: Record<CostCause, number> = {
    ...terms,
    // The refined mask and the re-estimated colours at full size, and the guided filter's float planes on its coarse grid.
    refine: options.refine ? pixels * 4 + square * 12 * FLOAT : 0,
    quality: qualityBytes(inputs, pixels, square),
    // hardenInterior's flags, a byte a pixel, and its two column counts.
    semitransparency: options.semitransparency ? 0 : pixels + width * 2 * 4,
    // The shadow is drawn into the laid-out buffers, so it costs its coarse grid, plus whatever a canvas grown for it costs more.
    shadow_type: shadow ? shadowWorkingBytes(worst) + total(canvasTerms(inputs, pixels, canvas)) - total(terms) : 0,
  };
  for (const cause of Object.keys(byCause) as CostCause[]) byCause[cause] = Math.ceil(byCause[cause] * CALIBRATION);
  const bytes = total(byCause);
  return { bytes, byCause, width, height, worstCanvasPixels, canvasPixels: canvas };
}

/** A warmup: a small synthetic image, and the model's input and output. */
export function estimateWarmup(model: CostModel): number {
  const square = model.inputSize * model.inputSize;
  return Math.ceil(square * (3 + 3 * FLOAT + FLOAT + 1) * CALIBRATION);
}

/**
 * The parameter that made a request too large for `capacity`: the largest
 * optional cost without which it would fit, else the image itself.
 */
export function causeOfExcess(estimate: CostEstimate, capacity: number): CostCause {
  let chosen: CostCause = 'image';
  for (const [cause, bytes] of Object.entries(estimate.byCause) as [CostCause, number][]) {
    const fitsWithout = estimate.bytes - bytes <= capacity;
    if (cause !== 'image' && bytes > 0 && fitsWithout && (chosen === 'image' || bytes > estimate.byCause[chosen])) chosen = cause;
  }
  return chosen;
}
