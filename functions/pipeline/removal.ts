import { ApiError } from '../errors';
import type { ModelHolder } from '../model/holder';
import type { ModelEntry } from '../model/registry';
import { modelToRun, type PreviewSelection } from '../model/selection';
import { colourBackdrop, imageBackdrop } from './backdrops';
import type { Backdrop } from './composite';
import { type CostEstimate, estimateRemoval } from './cost';
import { decodeWithHeader, type ImageHeader, readImageHeader } from './decode';
import { describeSize, megapixels, processedSize } from './size';
import { checkEncodable, encode } from './encode';
import { estimateForeground } from './colourEstimation';
import { infer } from './infer';
import { layout } from './layout';
import { maskKey, type MaskCache, type MaskCacheOutcome } from './maskCache';
import { hardenInterior } from './maskFilters';
import { PASS_PLANS, type RemovalOptions } from './options';
import { fitModelMasks, type ModelMasks, passesOf, type QualityPass, runPasses } from './passes';
import { preprocess } from './preprocess';
import { refineMask } from './refine';
import { castShadow } from './shadow';
import type { Box, DecodedImage, EncodedImage, RgbImage } from './types';

/** `cache` is hashing the image and looking its mask up, when the instance has a mask cache. */
export type Stage = 'decode' | 'load' | 'cache' | 'queue' | 'preprocess' | 'infer' | 'postprocess' | 'refine' | 'layout' | 'shadow' | 'encode';
export type StageTimings = Partial<Record<Stage, number>>;

/** The bytes of one request's images, and what to do with them. */
export interface RemovalJob {
  image: Buffer;
  backgroundImage: Buffer | null;
  options: RemovalOptions;
}

export interface RemovalResult {
  image: EncodedImage;
  model: string;
  /** The subject's box in the output image; null when the mask is empty. */
  foreground: Box | null;
  timings: StageTimings;
  maskCache: MaskCacheOutcome;
  /** The inference passes the mask was made by (on a cache hit, by the request that made it). */
  passes: QualityPass[];
}

export interface RemovalLimits {
  maxInputPixels: number;
  /** MAX_OUTPUT_PIXELS: the largest canvas layout may make. */
  maxOutputPixels: number;
}

/** A job whose headers were read and whose peak memory was estimated; nothing is decoded yet. */
export interface RemovalPlan {
  job: RemovalJob;
  image: ImageHeader;
  background: ImageHeader | null;
  /** The model that runs: the requested one, or its preview variant. */
  model: ModelEntry;
  cost: CostEstimate;
  limits: RemovalLimits;
}

export interface RemovalContext {
  holder: ModelHolder;
  /** The instance's masks at model resolution; none for the CLI or with MASK_CACHE_MB=0. */
  maskCache?: MaskCache | undefined;
  /** Aborted when the client leaves or the deadline passes: no further stage starts. */
  signal?: AbortSignal;
}

/**
 * Reads both images' headers (refusing unsupported, corrupt and oversized
 * ones), picks the model that runs (the requested one, or its preview
 * variant for a small result), and estimates the removal's peak memory with
 * it, before a pixel is decoded.
 */
export async function planRemoval(job: RemovalJob, requested: ModelEntry, limits: RemovalLimits & PreviewSelection, json = false): Promise<RemovalPlan> {
  const [image, background] = await Promise.all([
    readImageHeader(job.image, limits.maxInputPixels),
    job.backgroundImage ? readImageHeader(job.backgroundImage, limits.maxInputPixels) : null,
  ]);
  // The mask is made at the processed size, so that size decides whether a preview variant may stand in.
  const processed = processedSize(image, job.options.maxPixels);
  const model = modelToRun(limits, requested, processed.width * processed.height);
  const cost = estimateRemoval({ image, background, options: job.options, model, maxOutputPixels: limits.maxOutputPixels, json });
  // Without crop the canvas is the processed image itself, so its size is known now and checked before any inference.
  if (!job.options.layout.crop) {
    if (cost.width * cost.height > limits.maxOutputPixels) {
      throw new ApiError(
        'image_too_large',
        `The result would be ${describeSize(cost.width, cost.height)}; the output limit is ${megapixels(limits.maxOutputPixels)}: use size to scale it down.`,
      );
    }
    checkEncodable(cost.width, cost.height, job.options.encode);
  }
  // removeBackground loads whatever the options name, so the choice is made here once.
  return { job: { ...job, options: { ...job.options, model: model.name } }, image, background, model, cost, limits };
}

class Stopwatch {
  readonly timings: StageTimings = {};

  constructor(private readonly signal?: AbortSignal) {}

  async time<T>(stage: Stage, work: () => Promise<T>): Promise<T> {
    this.signal?.throwIfAborted();
    const started = performance.now();
    try {
      return await work();
    } finally {
      this.timings[stage] = (this.timings[stage] ?? 0) + performance.now() - started;
    }
  }
}

async function backdropFor(job: RemovalJob, background: DecodedImage | null, width: number, height: number): Promise<Backdrop | null> {
  if (job.options.backgroundColour) return colourBackdrop(job.options.backgroundColour);
  return background ? imageBackdrop(background, width, height) : null;
}

/**
 * The soft edge `semitransparency=false` keeps: two pixels of the model's
 * map either side of the subject's outline, as the upscale spreads each of
 * them over max(width, height) / inputSize image pixels.
 */
function edgeBand(width: number, height: number, inputSize: number): number {
  return Math.max(1, Math.round((2 * Math.max(width, height)) / inputSize));
}

/**
 * The model's masks at its own resolution: from the cache when these bytes
 * were seen at this working size with this model and quality, else
 * load → preprocess → queue → infer (every pass `quality` asks for), then
 * stored. A hit neither loads the model (nor makes the holder unload
 * another) nor takes a place in the inference queue; its memory was
 * reserved by admission like any removal's.
 */
async function passMasks(
  image: DecodedImage,
  job: RemovalJob,
  entry: ModelEntry,
  context: RemovalContext,
  clock: Stopwatch,
): Promise<{ masks: ModelMasks; maskCache: MaskCacheOutcome }> {
  const { holder, maskCache } = context;
  const { quality } = job.options;
  const key = maskCache
    ? await clock.time('cache', () => Promise.resolve(maskKey(job.image, { model: entry.name, quality, width: image.width, height: image.height })))
    : undefined;
  const cached = key === undefined ? undefined : maskCache?.get(key);
  if (cached) return { masks: cached, maskCache: 'hit' };
  const model = await clock.time('load', () => holder.get(entry.name));
  const input = await clock.time('preprocess', () => preprocess(image, model.entry));
  const queuedAt = performance.now();
  // Every pass runs in one slot, so the request queues once.
  const masks = await holder.runInference(() => {
    clock.timings.queue = performance.now() - queuedAt;
    return clock.time('infer', () => runPasses(image, input, model.entry, PASS_PLANS[quality], (passInput) => infer(model, passInput)));
  }, context.signal);
  if (key !== undefined) maskCache?.set(key, masks);
  return { masks, maskCache: key === undefined ? 'off' : 'miss' };
}

/**
 * decode → (cache) → load → preprocess → queue → infer → postprocess → refine →
 * layout → shadow → encode, refine and shadow only when asked for, and the
 * four stages after the cache only on a miss. Both images are decoded before
 * the model is touched, so bad input is refused without loading it.
 */
export async function removeBackground(plan: RemovalPlan, context: RemovalContext): Promise<RemovalResult> {
  const clock = new Stopwatch(context.signal);
  const { job } = plan;
  const { options } = job;
  const image = await clock.time('decode', () => decodeWithHeader(job.image, plan.image, options.maxPixels));
  // Covering the output never needs more pixels than the image has.
  const background =
    job.backgroundImage && plan.background
      ? await clock.time('decode', () => decodeWithHeader(job.backgroundImage!, plan.background!, image.width * image.height))
      : null;
  const made = await passMasks(image, job, plan.model, context, clock);
  let mask = await clock.time('postprocess', async () => {
    const fitted = await fitModelMasks(made.masks, image, options.postProcess);
    return options.semitransparency ? fitted : hardenInterior(fitted, edgeBand(image.width, image.height, plan.model.inputSize));
  });
  let colours: RgbImage = image;
  if (options.refine) {
    await clock.time('refine', () => {
      mask = refineMask(image, mask);
      colours = { width: image.width, height: image.height, rgb: estimateForeground(image, mask.alpha) };
      return Promise.resolve();
    });
  }
  let laidOut = await clock.time('layout', () => layout(colours, mask, options.layout, image.width / image.sourceWidth, plan.limits.maxOutputPixels));
  const { shadow } = options;
  if (shadow) laidOut = await clock.time('shadow', () => Promise.resolve(castShadow(laidOut, shadow)));
  const encoded = await clock.time('encode', async () =>
    encode(laidOut.image, laidOut.mask, options.encode, await backdropFor(job, background, laidOut.image.width, laidOut.image.height)),
  );
  return {
    image: encoded,
    model: plan.model.name,
    foreground: laidOut.foreground,
    timings: clock.timings,
    maskCache: made.maskCache,
    passes: passesOf(made.masks, PASS_PLANS[options.quality]),
  };
}

export interface WarmupResult {
  model: string;
  alreadyWarm: boolean;
  loadMs: number;
  inferMs: number;
}

const WARMUP_SIDE = 64;

/** A small gradient: enough to run every operator once, cheap to make. */
function syntheticImage(): DecodedImage {
  const rgb = Buffer.allocUnsafe(WARMUP_SIDE * WARMUP_SIDE * 3);
  for (let y = 0; y < WARMUP_SIDE; y += 1) {
    for (let x = 0; x < WARMUP_SIDE; x += 1) {
      const index = (y * WARMUP_SIDE + x) * 3;
      rgb[index] = x * 4;
      rgb[index + 1] = y * 4;
      rgb[index + 2] = 128;
    }
  }
  return { width: WARMUP_SIDE, height: WARMUP_SIDE, sourceWidth: WARMUP_SIDE, sourceHeight: WARMUP_SIDE, rgb, alpha: null, format: 'raw' };
}

/** Loads the model if needed and runs one inference, so the first real request pays neither. */
export async function warm(holder: ModelHolder, signal?: AbortSignal): Promise<WarmupResult> {
  const alreadyWarm = holder.isLoaded;
  const loadStarted = performance.now();
  const model = await holder.get();
  const loadMs = alreadyWarm ? 0 : performance.now() - loadStarted;
  const input = await preprocess(syntheticImage(), model.entry);
  const inferStarted = performance.now();
  await holder.runInference(() => infer(model, input), signal);
  return { model: model.entry.name, alreadyWarm, loadMs, inferMs: performance.now() - inferStarted };
}
