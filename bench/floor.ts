/**
 * The inference floor: `session.run` alone on a ready tensor, fetching only the
 * output the service uses, with the service's own session options and threads.
 * Nothing the service does per request can be faster than this.
 *
 * As a script: `node dist/bench/floor.js [model] [iterations]` prints one JSON line.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { loadConfig } from '../functions/config';
import { decodeImage } from '../functions/pipeline/decode';
import { preprocess } from '../functions/pipeline/preprocess';
import { findModel, type ModelEntry, modelFilePath } from '../functions/model/registry';
import { resizeInput } from '../functions/model/resizeInput';
import { type SessionSettings, sessionOptions } from '../functions/model/session';
import type { ModelInput } from '../functions/model/tensors';
import { fixture } from '../tools/lib/images';
import { median, peakRssMiB, round } from './stats';

export interface FloorResult {
  model: string;
  threads: number;
  createMs: number;
  /** The first run, which allocates what later runs reuse. */
  firstRunMs: number;
  samplesMs: number[];
  medianMs: number;
}

/** A real photo through the real decode and preprocess, so the tensor is what the service feeds the model. */
async function modelInput(entry: ModelEntry, image = fixture('anime-girl-1.jpg')): Promise<ModelInput> {
  return preprocess(await decodeImage(image, { maxInputPixels: Number.MAX_SAFE_INTEGER }), entry);
}

export function inputTensor(input: ModelInput): ort.Tensor {
  return new ort.Tensor('float32', input.data, [1, 3, input.size, input.size]);
}

export interface BenchSession {
  session: ort.InferenceSession;
  inputName: string;
  outputName: string;
  createMs: number;
}

/**
 * A bare onnxruntime session on this thread with the service's options
 * (`overrides` vary them for the lever measurements), bypassing the service's
 * model holder so that nothing but `session.run` is timed.
 */
export async function createSession(
  entry: ModelEntry,
  settings: SessionSettings,
  overrides: ort.InferenceSession.SessionOptions = {},
  file = modelFilePath(settings.modelsDir, entry),
): Promise<BenchSession> {
  const started = performance.now();
  const session = await ort.InferenceSession.create(file, { ...sessionOptions(settings), ...overrides });
  const createMs = performance.now() - started;
  const inputName = entry.input ?? session.inputNames[0]!;
  const outputName = entry.output ?? session.outputNames[0]!;
  return { session, inputName, outputName, createMs };
}

/**
 * A session of `base` rewritten for a `side`² input by the resize-input
 * transform, for sizes the registry does not ship (768²): the bytes go
 * through a temporary file, removed once the session has read it.
 */
export async function resizedSession(base: ModelEntry, settings: SessionSettings, side: number): Promise<{ entry: ModelEntry; session: BenchSession }> {
  const entry: ModelEntry = { ...base, name: `${base.name}-at-${side}`, inputSize: side };
  const file = path.join(os.tmpdir(), `detourage-${entry.name}-${process.pid}.onnx`);
  await writeFile(file, resizeInput(await readFile(modelFilePath(settings.modelsDir, base)), base.inputSize, side).bytes);
  try {
    return { entry, session: await createSession(entry, settings, {}, file) };
  } finally {
    await rm(file, { force: true });
  }
}

export async function runOnce(model: BenchSession, tensor: ort.Tensor): Promise<Float32Array> {
  const results = await model.session.run({ [model.inputName]: tensor }, [model.outputName]);
  return results[model.outputName]!.data as Float32Array;
}

/** Times `iterations` runs after one untimed first run. */
async function timeRuns(model: BenchSession, tensor: ort.Tensor, iterations: number): Promise<{ firstRunMs: number; samplesMs: number[] }> {
  const run = async (): Promise<number> => {
    const started = performance.now();
    await runOnce(model, tensor);
    return performance.now() - started;
  };
  const firstRunMs = await run();
  const samplesMs: number[] = [];
  for (let index = 0; index < iterations; index += 1) samplesMs.push(await run());
  return { firstRunMs, samplesMs };
}

export async function measureFloor(entry: ModelEntry, settings: SessionSettings, iterations: number): Promise<FloorResult> {
  const tensor = inputTensor(await modelInput(entry));
  const model = await createSession(entry, settings);
  try {
    const { firstRunMs, samplesMs } = await timeRuns(model, tensor, iterations);
    return {
      model: entry.name,
      threads: settings.inferThreads,
      createMs: round(model.createMs),
      firstRunMs: round(firstRunMs),
      samplesMs: samplesMs.map((ms) => round(ms)),
      medianMs: round(median(samplesMs)),
    };
  } finally {
    await model.session.release();
  }
}

async function main(): Promise<void> {
  const config = loadConfig({ ...process.env, MODEL: process.argv[2] ?? process.env.MODEL });
  const entry = findModel(config.model)!;
  const result = await measureFloor(entry, config, Number(process.argv[3] ?? 5));
  console.log(JSON.stringify({ ...result, peakRssMiB: round(await peakRssMiB('self')) }));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
