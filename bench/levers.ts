/**
 * Measures the levers of issue 4 without changing the service: each varies one
 * thing (session options, precision, a saved optimised graph, decoding, PNG
 * settings, libvips threads, the allocator) against what the service does now.
 *
 *   node dist/bench/levers.js [session,alloc,graph,precision,optimized,decode,png,postprocess,interleave,sharp,malloc] [--quick]
 *
 * Prints a table per lever and writes every figure to bench/.results/.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { InferenceSession } from 'onnxruntime-node';
import type { Sharp } from 'sharp';
import { loadConfig } from '../functions/config';
import { findModel, type ModelEntry, modelFilePath } from '../functions/model/registry';
import type { ModelInput } from '../functions/model/tensors';
import { checkWeights } from '../functions/model/weights';
import { DEFAULT_MODELS_DIR, PROJECT_ROOT } from '../functions/paths';
import { decodeImage } from '../functions/pipeline/decode';
import { encode } from '../functions/pipeline/encode';
import { normaliseToBytes, postprocess } from '../functions/pipeline/postprocess';
import { preprocess } from '../functions/pipeline/preprocess';
import { sharp } from '../functions/pipeline/sharp';
import type { DecodedImage } from '../functions/pipeline/types';
import { alphaChannel, compareAlpha, fixture } from '../test/support/images';
import { memory } from './bench';
import { createSession, inputTensor, runOnce, type BenchSession } from './floor';
import { type BenchImage, benchImages, FIXTURE_NAMES } from './images';
import type { ProbeRequest, ProbeResult } from './session-probe';
import { removal, type RemovalSample, spawnServer, waitForHealth, warmup } from './server-process';
import { loadAverage, median, round, timed } from './stats';

const RESULTS_DIR = path.join(PROJECT_ROOT, 'bench', '.results');
const CACHE_DIR = path.join(PROJECT_ROOT, 'bench', '.cache');
const PROBE_SCRIPT = path.join(__dirname, 'session-probe.js');
const MAX_PIXELS = { maxInputPixels: Number.MAX_SAFE_INTEGER };

const quick = process.argv.includes('--quick');
const settingsFor = (model: string) => loadConfig({ ...process.env, MODEL: model });
const entryOf = (model: string): ModelEntry => findModel(model)!;

/** The fp32 rewrite of isnet-fp16 is the registry's isnet-fp32, made by the fetcher. */
function fp32ModelFile(): string {
  const file = modelFilePath(DEFAULT_MODELS_DIR, entryOf('isnet-fp32'));
  if (checkWeights(entryOf('isnet-fp32'), DEFAULT_MODELS_DIR, 'size') !== 'present') throw new Error(`${file} is missing: npm run models:fetch -- isnet-fp32`);
  return file;
}

async function probe(request: ProbeRequest, env: Record<string, string> = {}): Promise<ProbeResult> {
  const { stdout } = await promisify(execFile)(process.execPath, [PROBE_SCRIPT, JSON.stringify(request)], {
    maxBuffer: 1 << 20,
    env: { ...process.env, ...env },
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as ProbeResult;
}

interface ProbeSummary {
  config: string;
  model: string;
  n: number;
  medianMs: number;
  /** Least disturbed by other processes on a shared machine. */
  minMs: number;
  samplesMs: number[];
  firstRunMs: number;
  createMs: number;
  peakRssMiB: number;
  rssAfterCreateMiB: number;
  rssAfterRunsMiB: number;
}

/** Runs every (model, config) `passes` times, round-robin, so drift in machine load spreads evenly over configs. */
async function probeMatrix(
  configs: readonly { name: string; model: string; file?: string; overrides?: InferenceSession.SessionOptions; env?: Record<string, string> }[],
  passes: number,
  iterations: number,
): Promise<ProbeSummary[]> {
  const results = new Map<number, ProbeResult[]>();
  for (let pass = 0; pass < passes; pass += 1) {
    for (const [index, config] of configs.entries()) {
      console.error(`  pass ${pass + 1}/${passes}: ${config.model} ${config.name}`);
      const result = await probe({ model: config.model, file: config.file, overrides: config.overrides, iterations }, config.env);
      results.set(index, [...(results.get(index) ?? []), result]);
    }
  }
  return configs.map((config, index) => {
    const runs = results.get(index)!;
    return {
      config: config.name,
      model: config.model,
      n: runs.reduce((sum, run) => sum + run.samplesMs.length, 0),
      medianMs: round(median(runs.flatMap((run) => run.samplesMs))),
      minMs: round(Math.min(...runs.flatMap((run) => run.samplesMs))),
      samplesMs: runs.flatMap((run) => run.samplesMs),
      firstRunMs: round(median(runs.map((run) => run.firstRunMs))),
      createMs: round(median(runs.map((run) => run.createMs))),
      peakRssMiB: round(Math.max(...runs.map((run) => run.peakRssMiB))),
      rssAfterCreateMiB: round(median(runs.map((run) => run.rssAfterCreateMiB))),
      rssAfterRunsMiB: round(median(runs.map((run) => run.rssAfterRunsMiB))),
    };
  });
}

function printProbeTable(rows: readonly ProbeSummary[]): void {
  console.log(`${'model'.padEnd(12)}${'config'.padEnd(34)}${'n'.padStart(3)}${'median'.padStart(8)}${'min'.padStart(7)}${'first'.padStart(8)}${'create'.padStart(8)}${'peakMiB'.padStart(9)}${'afterCreate'.padStart(12)}`);
  for (const row of rows) {
    console.log(
      `${row.model.padEnd(12)}${row.config.padEnd(34)}${String(row.n).padStart(3)}${row.medianMs.toFixed(0).padStart(8)}${row.minMs.toFixed(0).padStart(7)}${row.firstRunMs.toFixed(0).padStart(8)}` +
        `${row.createMs.toFixed(0).padStart(8)}${row.peakRssMiB.toFixed(0).padStart(9)}${row.rssAfterCreateMiB.toFixed(0).padStart(12)}`,
    );
  }
}

const SESSION_CONFIGS: readonly { name: string; overrides: InferenceSession.SessionOptions }[] = [
  { name: 'service', overrides: {} },
  { name: 'arena on', overrides: { enableCpuMemArena: true } },
  { name: 'mem pattern on', overrides: { enableMemPattern: true } },
  { name: 'arena + pattern on (ort default)', overrides: { enableCpuMemArena: true, enableMemPattern: true } },
  { name: 'graph disabled', overrides: { graphOptimizationLevel: 'disabled' } },
  { name: 'graph basic', overrides: { graphOptimizationLevel: 'basic' } },
  { name: 'graph extended', overrides: { graphOptimizationLevel: 'extended' } },
  { name: 'intra 1', overrides: { intraOpNumThreads: 1 } },
  { name: 'parallel, inter 2', overrides: { executionMode: 'parallel', interOpNumThreads: 2 } },
  { name: 'parallel, inter 2, intra 1', overrides: { executionMode: 'parallel', interOpNumThreads: 2, intraOpNumThreads: 1 } },
];

async function sessionLever(): Promise<unknown> {
  const configs = ['isnet-fp16', 'isnet-uint8'].flatMap((model) => SESSION_CONFIGS.map((config) => ({ ...config, model })));
  const rows = await probeMatrix(configs, quick ? 1 : 2, quick ? 2 : 4);
  printProbeTable(rows);
  return rows;
}

/**
 * With the arena off, every large tensor is a fresh mmap that the kernel
 * must fault in and zero on each run; the arena keeps them, at a price in
 * RSS. glibc can instead back those mmaps with transparent huge pages
 * (512x fewer faults) when THP is in madvise mode, as here.
 */
async function allocLever(): Promise<unknown> {
  const hugePages = { GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1' };
  const configs = ['isnet-fp16', 'isnet-uint8', 'fp32'].flatMap((variant) => {
    const model = variant === 'fp32' ? 'isnet-fp16' : variant;
    const file = variant === 'fp32' ? fp32ModelFile() : undefined;
    const label = variant === 'fp32' ? 'fp32: ' : '';
    return [
      { name: `${label}service`, model, file },
      { name: `${label}arena on`, model, file, overrides: { enableCpuMemArena: true } },
      { name: `${label}THP malloc (hugetlb=1)`, model, file, env: hugePages },
      { name: `${label}THP malloc + arena on`, model, file, overrides: { enableCpuMemArena: true }, env: hugePages },
    ];
  });
  const rows = await probeMatrix(configs, quick ? 1 : 2, quick ? 2 : 4);
  printProbeTable(rows);
  return rows;
}

/** Graph levels on the fp32 rewrite: `disabled` keeps no prepacked weight copies, which is the largest RSS lever left. */
async function graphLever(): Promise<unknown> {
  const file = fp32ModelFile();
  const configs = (['all', 'extended', 'basic', 'disabled'] as const).map((level) => ({
    name: `fp32: graph ${level}`,
    model: 'isnet-fp16',
    file,
    overrides: { graphOptimizationLevel: level },
  }));
  const rows = await probeMatrix(configs, quick ? 1 : 2, quick ? 2 : 3);
  printProbeTable(rows);
  return rows;
}

interface MaskSet {
  /** Normalised 1024² mask bytes per fixture. */
  maps: Map<string, Buffer>;
  /** Full-size alpha per fixture. */
  alphas: Map<string, Buffer>;
}

async function masksFor(session: BenchSession, entry: ModelEntry, images: readonly { name: string; decoded: DecodedImage; input: ModelInput }[]): Promise<MaskSet> {
  const maps = new Map<string, Buffer>();
  const alphas = new Map<string, Buffer>();
  for (const image of images) {
    const output = { size: image.input.size, data: await runOnce(session, inputTensor(image.input)) };
    maps.set(image.name, normaliseToBytes(output, entry.postprocess));
    alphas.set(image.name, (await postprocess(output, entry.postprocess, image.decoded)).alpha);
  }
  return { maps, alphas };
}

function maxAbsDiff(a: Buffer, b: Buffer): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let index = 0; index < a.length; index += 1) {
    const diff = Math.abs(a[index]! - b[index]!);
    sum += diff;
    if (diff > max) max = diff;
  }
  return { max: round(max / 255, 4), mean: round(sum / a.length / 255, 6) };
}

async function precisionLever(): Promise<unknown> {
  const variants = [
    { name: 'fp16', model: 'isnet-fp16' },
    { name: 'uint8', model: 'isnet-uint8' },
    { name: 'fp32 (rewritten fp16)', model: 'isnet-fp16', file: fp32ModelFile() },
  ];
  console.error('precision: speed and RSS');
  const speed = await probeMatrix(variants.map((variant) => ({ ...variant, name: variant.name })), quick ? 1 : 3, quick ? 2 : 4);
  printProbeTable(speed);

  console.error('precision: quality');
  const entry = entryOf('isnet-fp16');
  const images = [];
  for (const name of FIXTURE_NAMES) {
    const decoded = await decodeImage(fixture(name), MAX_PIXELS);
    images.push({ name, decoded, input: await preprocess(decoded, entry) });
  }
  const reference = await alphaChannel(fixture('anime-girl-1.isnet-general-use.png'));
  const masks = new Map<string, MaskSet>();
  for (const variant of variants) {
    const session = await createSession(entryOf(variant.model), settingsFor(variant.model), {}, variant.file);
    masks.set(variant.name, await masksFor(session, entryOf(variant.model), images));
    await session.session.release();
  }
  const fp16 = masks.get('fp16')!;
  const quality = variants.map((variant) => {
    const set = masks.get(variant.name)!;
    const vsReference = compareAlpha(set.alphas.get('anime-girl-1.jpg')!, reference.data);
    const vsFp16 = FIXTURE_NAMES.map((name) => ({
      image: name,
      ...compareAlpha(set.alphas.get(name)!, fp16.alphas.get(name)!),
      normalisedMaskDiff: maxAbsDiff(set.maps.get(name)!, fp16.maps.get(name)!),
    }));
    return { variant: variant.name, animeGirlVsRembg: { iou: round(vsReference.iou, 4), mae: round(vsReference.mae, 5) }, vsFp16 };
  });
  for (const row of quality) {
    console.log(`${row.variant.padEnd(24)} vs rembg anime-girl-1: IoU ${row.animeGirlVsRembg.iou.toFixed(4)} MAE ${row.animeGirlVsRembg.mae.toFixed(5)}`);
    for (const image of row.vsFp16) {
      console.log(
        `    vs fp16 ${image.image.padEnd(18)} IoU ${image.iou.toFixed(4)} MAE ${image.mae.toFixed(5)}  1024² mask max|Δ| ${image.normalisedMaskDiff.max} mean ${image.normalisedMaskDiff.mean}`,
      );
    }
  }
  return { speed, quality };
}

async function optimizedLever(): Promise<unknown> {
  mkdirSync(CACHE_DIR, { recursive: true });
  const configs = [];
  for (const model of ['isnet-fp16', 'isnet-uint8']) {
    const savedAll = path.join(CACHE_DIR, `${model}.optimized-all.onnx`);
    const savedBasic = path.join(CACHE_DIR, `${model}.optimized-basic.onnx`);
    // Saving happens during creation; one run is enough to prove the session works.
    await probe({ model, overrides: { optimizedModelFilePath: savedAll }, iterations: 0 });
    await probe({ model, overrides: { graphOptimizationLevel: 'basic', optimizedModelFilePath: savedBasic }, iterations: 0 });
    configs.push(
      { name: 'original, level all', model },
      { name: 'saved at all, level disabled', model, file: savedAll, overrides: { graphOptimizationLevel: 'disabled' as const } },
      { name: 'saved at all, level all', model, file: savedAll },
      { name: 'saved at basic, level all', model, file: savedBasic },
    );
  }
  const rows = await probeMatrix(configs, quick ? 1 : 3, quick ? 1 : 2);
  printProbeTable(rows);
  return rows;
}

/** Median ms of `reps` runs of `work`, after one untimed run. */
async function medianMs<T>(reps: number, work: () => Promise<T>): Promise<{ ms: number; value: T }> {
  let value = await work();
  const samples: number[] = [];
  for (let rep = 0; rep < reps; rep += 1) {
    const run = await timed(work);
    samples.push(run.ms);
    value = run.value;
  }
  return { ms: round(median(samples)), value };
}

/**
 * Shrink-on-load: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, so a
 * resize straight from the JPEG to the model's square never makes the
 * full-resolution pixels. The service needs those for a cutout, but a mask
 * only needs the dimensions.
 */
async function decodeLever(images: readonly BenchImage[]): Promise<unknown> {
  const entry = entryOf('isnet-fp16');
  const session = await createSession(entry, settingsFor('isnet-fp16'));
  const reps = quick ? 2 : 5;
  const rows = [];
  for (const image of images.filter((candidate) => candidate.name.startsWith('photo-'))) {
    const decode = await medianMs(reps, () => decodeImage(image.bytes, MAX_PIXELS));
    const fromFull = await medianMs(reps, () => preprocess(decode.value, entry));
    const shrunk = await medianMs(reps, async () => {
      const { data, info } = await sharp(image.bytes)
        .autoOrient()
        .toColourspace('srgb')
        .resize(entry.inputSize, entry.inputSize, { fit: 'fill', kernel: 'lanczos3' })
        .removeAlpha()
        .raw()
        .toBuffer({ resolveWithObject: true });
      return { width: info.width, height: info.height, sourceWidth: info.width, sourceHeight: info.height, rgb: data, alpha: null, format: 'jpeg' } satisfies DecodedImage;
    });
    const fromShrunk = await medianMs(reps, () => preprocess(shrunk.value, entry));
    const full = normaliseToBytes({ size: entry.inputSize, data: await runOnce(session, inputTensor(fromFull.value)) }, entry.postprocess);
    const small = normaliseToBytes({ size: entry.inputSize, data: await runOnce(session, inputTensor(fromShrunk.value)) }, entry.postprocess);
    const agreement = compareAlpha(small, full);
    rows.push({
      image: image.name,
      // sharp keeps a 2x margin for the final Lanczos pass, so below ~2x that of the target no DCT scaling happens.
      dctScalingUsed: !fromFull.value.data.every((value, index) => value === fromShrunk.value.data[index]),
      fullDecodeMs: decode.ms,
      preprocessFromFullMs: fromFull.ms,
      shrinkOnLoadMs: shrunk.ms,
      preprocessFromShrunkMs: fromShrunk.ms,
      saveMs: round(decode.ms + fromFull.ms - shrunk.ms - fromShrunk.ms),
      maskIoUVsFull: round(agreement.iou, 4),
      maskMaeVsFull: round(agreement.mae, 5),
    });
  }
  await session.session.release();
  console.log('image  (*: DCT scaling used) full decode  preprocess  | decode+resize in one  preprocess | saves   mask IoU/MAE vs full');
  for (const row of rows) {
    console.log(
      `${row.image.padEnd(14)}${row.dctScalingUsed ? '*' : ' '}${row.fullDecodeMs.toFixed(1).padStart(11)}${row.preprocessFromFullMs.toFixed(1).padStart(12)}  |` +
        `${row.shrinkOnLoadMs.toFixed(1).padStart(15)}${row.preprocessFromShrunkMs.toFixed(1).padStart(12)} |${row.saveMs.toFixed(1).padStart(7)}   ${row.maskIoUVsFull} / ${row.maskMaeVsFull}`,
    );
  }
  return rows;
}

/** The cutout the service would encode, as raw RGBA, and how long the service's own encode() takes for it. */
async function cutoutRgba(image: BenchImage, reps: number): Promise<{ rgba: Buffer; width: number; height: number; serviceEncodeMs: number }> {
  const entry = entryOf('isnet-fp16');
  const session = await createSession(entry, settingsFor('isnet-fp16'));
  const decoded = await decodeImage(image.bytes, MAX_PIXELS);
  const input = await preprocess(decoded, entry);
  const output = { size: input.size, data: await runOnce(session, inputTensor(input)) };
  await session.session.release();
  const mask = await postprocess(output, entry.postprocess, decoded);
  const png = await medianMs(reps, () => encode(decoded, mask, { format: 'png', channels: 'rgba' }));
  const rgba = await sharp(png.value.body).raw().toBuffer();
  return { rgba, width: decoded.width, height: decoded.height, serviceEncodeMs: png.ms };
}

type Encoder = (pipeline: Sharp) => Sharp;

const ENCODER_SETTINGS: readonly { name: string; encoder: Encoder }[] = [
  ...[false, true].flatMap((adaptiveFiltering) =>
    [1, 2, 3, 4, 5, 6, 7, 8, 9].map((compressionLevel) => ({
      name: `png level ${compressionLevel}${adaptiveFiltering ? ' adaptive' : ''}`,
      encoder: (pipeline: Sharp) => pipeline.png({ compressionLevel, adaptiveFiltering }),
    })),
  ),
  ...[1, 4, 7].map((effort) => ({
    name: `png palette effort ${effort} (lossy)`,
    encoder: (pipeline: Sharp) => pipeline.png({ palette: true, effort }),
  })),
  ...[0, 2, 4].map((effort) => ({
    name: `webp q90 alpha100 effort ${effort}`,
    encoder: (pipeline: Sharp) => pipeline.webp({ quality: 90, alphaQuality: 100, effort }),
  })),
];

/**
 * PNG settings on the service's real cutout: the 12 MP generated photo (grain
 * makes it a hard case) and plants-1, the largest real photo among the fixtures.
 */
async function pngLever(images: readonly BenchImage[]): Promise<unknown> {
  const reps = quick ? 1 : 3;
  const results = [];
  for (const name of ['photo-12mp', 'plants-1']) {
    const image = images.find((candidate) => candidate.name === name)!;
    const { rgba, width, height, serviceEncodeMs } = await cutoutRgba(image, reps);
    const raw = { raw: { width, height, channels: 4 as const } };
    const rows = [];
    for (const setting of ENCODER_SETTINGS) {
      console.error(`  ${name}: ${setting.name}`);
      const result = await medianMs(reps, () => setting.encoder(sharp(rgba, raw)).toBuffer());
      rows.push({ setting: setting.name, ms: result.ms, bytes: result.value.length });
    }
    console.log(`${name} cutout (${width}x${height} RGBA); the service's encode() (RGBA interleave in JS + png level 6): ${serviceEncodeMs.toFixed(0)} ms`);
    for (const row of rows) console.log(`  ${row.setting.padEnd(34)}${row.ms.toFixed(0).padStart(7)} ms${(row.bytes / 1e6).toFixed(3).padStart(9)} MB`);
    results.push({ image: name, width, height, serviceEncodeMs, rows });
  }
  return results;
}

/**
 * A candidate for encode's RGBA interleave: one 32-bit store per pixel
 * instead of four byte stores, same output (colour zeroed under alpha 0).
 */
function interleaveRgba32(rgb: Buffer, alpha: Buffer): Buffer {
  const pixelCount = alpha.length;
  // Zero-filled, so transparent pixels need no store at all.
  const words = new Uint32Array(pixelCount);
  for (let pixel = 0, source = 0; pixel < pixelCount; pixel += 1, source += 3) {
    const a = alpha[pixel]!;
    if (a !== 0) words[pixel] = (rgb[source]! | (rgb[source + 1]! << 8) | (rgb[source + 2]! << 16) | (a << 24)) >>> 0;
  }
  return Buffer.from(words.buffer, words.byteOffset, words.byteLength);
}

function zeroUnderTransparent(rgb: Buffer, alpha: Buffer): void {
  for (let pixel = 0; pixel < alpha.length; pixel += 1) {
    if (alpha[pixel] === 0) rgb.fill(0, pixel * 3, pixel * 3 + 3);
  }
}

/** The fp16 model's real output for the 2 and 12 MP photos, decoded once: the input of the post-model levers. */
async function modelOutputs(images: readonly BenchImage[]) {
  const entry = entryOf('isnet-fp16');
  const session = await createSession(entry, settingsFor('isnet-fp16'));
  const outputs = [];
  for (const name of ['photo-2mp', 'photo-12mp']) {
    const image = images.find((candidate) => candidate.name === name)!;
    const decoded = await decodeImage(image.bytes, MAX_PIXELS);
    const output = { size: entry.inputSize, data: await runOnce(session, inputTensor(await preprocess(decoded, entry))) };
    outputs.push({ name, decoded, output });
  }
  await session.session.release();
  return { entry, outputs };
}

/** At 12 MP the cutout's RGBA interleave in JS costs about as much as the PNG encode itself. */
async function interleaveLever(images: readonly BenchImage[]): Promise<unknown> {
  const { entry, outputs } = await modelOutputs(images);
  const reps = quick ? 1 : 5;
  const rows = [];
  for (const { name, decoded, output } of outputs) {
    const mask = await postprocess(output, entry.postprocess, decoded);
    const raw = { raw: { width: decoded.width, height: decoded.height, channels: 4 as const } };
    const service = await medianMs(reps, () => encode(decoded, mask, { format: 'png', channels: 'rgba' }));
    const words = await medianMs(reps, () => Promise.resolve(interleaveRgba32(decoded.rgb, mask.alpha)));
    const pngOnly = await medianMs(reps, () => sharp(words.value, raw).png({ compressionLevel: 6 }).toBuffer());
    const joined = await medianMs(reps, () =>
      sharp(decoded.rgb, { raw: { width: decoded.width, height: decoded.height, channels: 3 } })
        .joinChannel(mask.alpha, { raw: { width: decoded.width, height: decoded.height, channels: 1 } })
        .png({ compressionLevel: 6 })
        .toBuffer(),
    );
    // Zeroing colour under alpha 0 in place, then letting libvips join the alpha as it streams, never builds the 4-channel buffer.
    // Zeroing is idempotent, so one copy serves every repetition.
    const rgb = Buffer.from(decoded.rgb);
    const zeroedJoin = await medianMs(reps, () => {
      const startedZeroing = performance.now();
      zeroUnderTransparent(rgb, mask.alpha);
      const zeroingMs = performance.now() - startedZeroing;
      return sharp(rgb, { raw: { width: decoded.width, height: decoded.height, channels: 3 } })
        .joinChannel(mask.alpha, { raw: { width: decoded.width, height: decoded.height, channels: 1 } })
        .png({ compressionLevel: 6 })
        .toBuffer()
        .then((body) => ({ body, zeroingMs }));
    });
    rows.push({
      image: name,
      zeroedJoinMs: zeroedJoin.ms,
      zeroingMs: round(zeroedJoin.value.zeroingMs),
      zeroedJoinSameBytes: zeroedJoin.value.body.equals(service.value.body),
      serviceEncodeMs: service.ms,
      serviceBytes: service.value.body.length,
      pngOnlyMs: pngOnly.ms,
      serviceInterleaveMs: round(service.ms - pngOnly.ms),
      interleave32Ms: words.ms,
      interleave32SameBytes: pngOnly.value.equals(service.value.body),
      libvipsJoinMs: joined.ms,
      libvipsJoinBytes: joined.value.length,
    });
  }
  console.log(
    'image        service encode  = interleave + png6 | 32-bit interleave (same PNG?) | libvips joinChannel+png6 (colour kept under alpha 0) | zero in place + joinChannel + png6',
  );
  for (const row of rows) {
    console.log(
      `${row.image.padEnd(13)}${row.serviceEncodeMs.toFixed(0).padStart(10)} ms${row.serviceInterleaveMs.toFixed(0).padStart(12)}${row.pngOnlyMs.toFixed(0).padStart(7)} |` +
        `${row.interleave32Ms.toFixed(0).padStart(14)} ms (${row.interleave32SameBytes ? 'same' : 'DIFFERENT'})     |${row.libvipsJoinMs.toFixed(0).padStart(10)} ms, ${(row.libvipsJoinBytes / 1e6).toFixed(2)} MB vs ${(row.serviceBytes / 1e6).toFixed(2)} MB | ` +
        `${row.zeroedJoinMs.toFixed(0)} ms (${row.zeroedJoinSameBytes ? 'same PNG' : 'DIFFERENT PNG'})`,
    );
  }
  return rows;
}

/** The mask's upscale to full size is the largest non-model stage at 12 MP; rembg uses Lanczos. */
async function postprocessLever(images: readonly BenchImage[]): Promise<unknown> {
  const { entry, outputs } = await modelOutputs(images);
  const reps = quick ? 1 : 5;
  const rows = [];
  for (const { name, decoded, output } of outputs) {
    const service = await medianMs(reps, () => postprocess(output, entry.postprocess, decoded));
    // The same stage with libvips allowed a second thread (the machine otherwise idle).
    const defaultThreads = sharp.concurrency();
    sharp.concurrency(2);
    const twoThreads = await medianMs(reps, () => postprocess(output, entry.postprocess, decoded));
    sharp.concurrency(defaultThreads);
    const bytes = normaliseToBytes(output, entry.postprocess);
    const normaliseMs = (await medianMs(reps, () => Promise.resolve(normaliseToBytes(output, entry.postprocess)))).ms;
    for (const kernel of ['lanczos3', 'mitchell', 'cubic', 'linear'] as const) {
      const resized = await medianMs(reps, () =>
        sharp(bytes, { raw: { width: entry.inputSize, height: entry.inputSize, channels: 1 } })
          .resize(decoded.width, decoded.height, { fit: 'fill', kernel })
          .extractChannel(0)
          .raw()
          .toBuffer(),
      );
      const agreement = compareAlpha(resized.value, service.value.alpha);
      rows.push({ image: name, kernel, servicePostprocessMs: service.ms, twoThreadsPostprocessMs: twoThreads.ms, normaliseMs, resizeMs: resized.ms, iouVsLanczos: round(agreement.iou, 5), maeVsLanczos: round(agreement.mae, 6) });
    }
  }
  console.log('image        kernel     service postprocess (2 threads)  normalise  resize   IoU/MAE vs lanczos3');
  for (const row of rows) {
    console.log(
      `${row.image.padEnd(13)}${row.kernel.padEnd(10)}${row.servicePostprocessMs.toFixed(0).padStart(20)}${` (${row.twoThreadsPostprocessMs.toFixed(0)})`.padStart(12)}${row.normaliseMs.toFixed(0).padStart(11)}${row.resizeMs.toFixed(0).padStart(8)}   ${row.iouVsLanczos} / ${row.maeVsLanczos}`,
    );
  }
  return rows;
}

/**
 * Two clients each send 12 MP images back to back, so one request's decode,
 * postprocess and encode overlap the other's inference, as on a busy
 * instance. libvips threads compete with onnxruntime's for the two cores.
 */
async function sharpLever(images: readonly BenchImage[]): Promise<unknown> {
  const image = images.find((candidate) => candidate.name === 'photo-12mp')!;
  const perClient = quick ? 2 : 4;
  const rows = [];
  for (let pass = 0; pass < (quick ? 1 : 2); pass += 1) {
    for (const threads of [1, 2]) {
      console.error(`  pass ${pass + 1}: sharp.concurrency ${threads}`);
      const server = await spawnServer({ MODEL: 'isnet-fp16', BENCH_SHARP_CONCURRENCY: String(threads) }, ['-r', path.join(__dirname, 'sharp-concurrency.js')]);
      try {
        await waitForHealth(server);
        await warmup(server);
        const alone: RemovalSample[] = [];
        for (let index = 0; index < perClient; index += 1) alone.push(await removal(server, image));
        const started = performance.now();
        const overlapped = (
          await Promise.all(
            [0, 1].map(async () => {
              const samples: RemovalSample[] = [];
              for (let index = 0; index < perClient; index += 1) samples.push(await removal(server, image));
              return samples;
            }),
          )
        ).flat();
        const wallMs = performance.now() - started;
        const stage = (samples: RemovalSample[], name: string): number => round(median(samples.map((sample) => sample.stages[name] ?? Number.NaN)));
        rows.push({
          threads,
          pass,
          aloneInferMs: stage(alone, 'infer'),
          aloneSharpMs: round(median(alone.map((s) => (s.stages.decode ?? 0) + (s.stages.preprocess ?? 0) + (s.stages.postprocess ?? 0) + (s.stages.encode ?? 0)))),
          aloneLatencyMs: round(median(alone.map((sample) => sample.ms))),
          overlappedInferMs: stage(overlapped, 'infer'),
          overlappedSharpMs: round(median(overlapped.map((s) => (s.stages.decode ?? 0) + (s.stages.preprocess ?? 0) + (s.stages.postprocess ?? 0) + (s.stages.encode ?? 0)))),
          overlappedLatencyMs: round(median(overlapped.map((sample) => sample.ms))),
          throughputPerMin: round((overlapped.length / wallMs) * 60_000, 1),
        });
      } finally {
        await server.stop();
      }
    }
  }
  console.log('sharp threads | alone: infer  sharp stages  latency | overlapped: infer  sharp stages  latency  images/min');
  for (const row of rows) {
    console.log(
      `${String(row.threads).padStart(13)} |${row.aloneInferMs.toFixed(0).padStart(13)}${row.aloneSharpMs.toFixed(0).padStart(14)}${row.aloneLatencyMs.toFixed(0).padStart(9)} |` +
        `${row.overlappedInferMs.toFixed(0).padStart(18)}${row.overlappedSharpMs.toFixed(0).padStart(14)}${row.overlappedLatencyMs.toFixed(0).padStart(9)}${row.throughputPerMin.toFixed(1).padStart(12)}`,
    );
  }
  return rows;
}

/**
 * glibc gives each thread that allocates its own arena; capping them trades a
 * little speed for less fragmentation. libvips threads allocate too, so the
 * sharp thread count is varied alongside.
 */
async function mallocLever(images: readonly BenchImage[]): Promise<unknown> {
  const image = images.find((candidate) => candidate.name === 'photo-12mp')!;
  fp32ModelFile();
  const rows = [];
  for (const weights of ['fp16', 'fp32']) {
    for (const [arenas, sharpThreads] of [['default', '1'], ['default', '2'], ['2', '1'], ['2', '2'], ['1', '1']] as const) {
      console.error(`  ${weights} MALLOC_ARENA_MAX=${arenas} sharp ${sharpThreads}`);
      // MALLOC_ARENA_MAX also lifts sharp's glibc default of 1 thread, so the thread count is always set explicitly.
      const env: Record<string, string> = { BENCH_SHARP_CONCURRENCY: sharpThreads };
      if (arenas !== 'default') env.MALLOC_ARENA_MAX = arenas;
      const result = await memory(weights === 'fp32' ? 'isnet-fp32' : 'isnet-fp16', image, quick ? 1 : 3, env, ['-r', path.join(__dirname, 'sharp-concurrency.js')]);
      rows.push({ weights, mallocArenaMax: arenas, sharpThreads, ...result });
    }
  }
  console.log('weights  MALLOC_ARENA_MAX  sharp  load+warmup  resident  12MP one  4 in flight  (wall ms)');
  for (const row of rows) {
    console.log(
      `${row.weights.padEnd(9)}${row.mallocArenaMax.padStart(16)}${row.sharpThreads.padStart(7)}${row.loadPeakMiB.toFixed(0).padStart(13)}${row.residentAfterWarmupMiB.toFixed(0).padStart(10)}` +
        `${row.sequential12mpPeakMiB.toFixed(0).padStart(10)}${row.inFlight12mpPeakMiB.toFixed(0).padStart(13)}${row.inFlightWallMs.toFixed(0).padStart(11)}`,
    );
  }
  return rows;
}

const LEVERS: Record<string, (images: readonly BenchImage[]) => Promise<unknown>> = {
  session: sessionLever,
  alloc: allocLever,
  graph: graphLever,
  precision: precisionLever,
  optimized: optimizedLever,
  decode: decodeLever,
  png: pngLever,
  postprocess: postprocessLever,
  interleave: interleaveLever,
  sharp: sharpLever,
  malloc: mallocLever,
};

async function main(): Promise<void> {
  const requested = process.argv.slice(2).find((arg) => !arg.startsWith('--'));
  const names = requested ? requested.split(',') : Object.keys(LEVERS);
  for (const name of names) if (!LEVERS[name]) throw new Error(`unknown lever ${name}; known: ${Object.keys(LEVERS).join(', ')}`);
  const images = await benchImages();
  mkdirSync(RESULTS_DIR, { recursive: true });
  for (const name of names) {
    const loadBefore = loadAverage();
    console.log(`\n== lever: ${name} == (load average ${loadBefore.join(' ')})`);
    const started = Date.now();
    const result = await LEVERS[name]!(images);
    const record = { lever: name, date: new Date().toISOString(), quick, loadAverageBefore: loadBefore, loadAverageAfter: loadAverage(), durationS: round((Date.now() - started) / 1000), result };
    console.log(`(load average after ${record.loadAverageAfter.join(' ')}, ${record.durationS} s)`);
    writeFileSync(path.join(RESULTS_DIR, `${name}-${record.date.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(record, null, 1)}\n`);
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
