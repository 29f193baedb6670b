import type { ModelHolder } from '../model/holder';
import { decodeImage } from './decode';
import { type EncodeOptions, encode } from './encode';
import { infer } from './infer';
import { postprocess } from './postprocess';
import { preprocess } from './preprocess';
import type { DecodedImage, EncodedImage } from './types';

export type Stage = 'decode' | 'load' | 'queue' | 'preprocess' | 'infer' | 'postprocess' | 'encode';
export type StageTimings = Partial<Record<Stage, number>>;

export interface RemovalResult {
  image: EncodedImage;
  model: string;
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

/**
 * decode → preprocess → infer → postprocess → encode. The image is decoded
 * before the model is touched, so bad input is refused without loading it.
 */
export async function removeBackground(bytes: Buffer, options: EncodeOptions, context: RemovalContext): Promise<RemovalResult> {
  const clock = new Stopwatch(context.signal);
  const { holder } = context;
  const image = await clock.time('decode', () => decodeImage(bytes, { maxInputPixels: context.maxInputPixels }));
  const model = await clock.time('load', () => holder.get());
  const input = await clock.time('preprocess', () => preprocess(image, model.entry));
  const queuedAt = performance.now();
  const output = await holder.runInference(() => {
    clock.timings.queue = performance.now() - queuedAt;
    return clock.time('infer', () => infer(model, input));
  }, context.signal);
  const mask = await clock.time('postprocess', () => postprocess(output, model.entry.postprocess, image));
  const encoded = await clock.time('encode', () => encode(image, mask, options));
  return { image: encoded, model: model.entry.name, timings: clock.timings };
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
  return { width: WARMUP_SIDE, height: WARMUP_SIDE, rgb, alpha: null, format: 'raw' };
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
