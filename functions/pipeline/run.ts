import type { ModelHolder } from '../model/holder';
import type { RemovalOptions } from '../request/options';
import { colourBackdrop, imageBackdrop } from './background';
import type { Backdrop } from './composite';
import { decodeImage } from './decode';
import { encode } from './encode';
import { estimateForeground } from './foreground';
import { infer, inferMirrored } from './infer';
import { layout } from './layout';
import { postprocess } from './postprocess';
import { preprocess } from './preprocess';
import { refineMask } from './refine';
import type { Box, DecodedImage, EncodedImage, RgbImage } from './types';

export type Stage = 'decode' | 'load' | 'queue' | 'preprocess' | 'infer' | 'postprocess' | 'refine' | 'layout' | 'encode';
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
}

export interface RemovalContext {
  holder: ModelHolder;
  maxInputPixels: number;
  /** Aborted when the client leaves or the deadline passes: no further stage starts. */
  signal?: AbortSignal;
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
 * decode → preprocess → infer → postprocess → layout → encode. Both images
 * are decoded before the model is touched, so bad input is refused without
 * loading it.
 */
export async function removeBackground(job: RemovalJob, context: RemovalContext): Promise<RemovalResult> {
  const clock = new Stopwatch(context.signal);
  const { holder, maxInputPixels } = context;
  const { options } = job;
  const image = await clock.time('decode', () => decodeImage(job.image, { maxInputPixels, maxOutputPixels: options.maxPixels }));
  // Covering the output never needs more pixels than the image has.
  const backgroundLimits = { maxInputPixels, maxOutputPixels: image.width * image.height };
  const background = job.backgroundImage ? await clock.time('decode', () => decodeImage(job.backgroundImage!, backgroundLimits)) : null;
  const model = await clock.time('load', () => holder.get(options.model));
  const input = await clock.time('preprocess', () => preprocess(image, model.entry));
  const queuedAt = performance.now();
  // Both passes of quality=high run in one slot, so the request queues once.
  const output = await holder.runInference(() => {
    clock.timings.queue = performance.now() - queuedAt;
    return clock.time('infer', () => (options.quality === 'high' ? inferMirrored(model, input) : infer(model, input)));
  }, context.signal);
  let mask = await clock.time('postprocess', () => postprocess(output, model.entry.postprocess, image, options.postProcess));
  let colours: RgbImage = image;
  if (options.refine) {
    await clock.time('refine', () => {
      mask = refineMask(image, mask);
      colours = { width: image.width, height: image.height, rgb: estimateForeground(image, mask.alpha) };
      return Promise.resolve();
    });
  }
  const laidOut = await clock.time('layout', () => layout(colours, mask, options.layout, image.width / image.sourceWidth));
  const encoded = await clock.time('encode', async () =>
    encode(laidOut.image, laidOut.mask, options.encode, await backdropFor(job, background, laidOut.image.width, laidOut.image.height)),
  );
  return { image: encoded, model: model.entry.name, foreground: laidOut.foreground, timings: clock.timings };
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
export async function warm(holder: ModelHolder): Promise<WarmupResult> {
  const alreadyWarm = holder.isLoaded;
  const loadStarted = performance.now();
  const model = await holder.get();
  const loadMs = alreadyWarm ? 0 : performance.now() - loadStarted;
  const input = await preprocess(syntheticImage(), model.entry);
  const inferStarted = performance.now();
  await holder.runInference(() => infer(model, input));
  return { model: model.entry.name, alreadyWarm, loadMs, inferMs: performance.now() - inferStarted };
}
