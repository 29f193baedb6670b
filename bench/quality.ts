/**
 * Measures the mask-quality levers of issue 5 (post_process, refine,
 * quality=high) against alpha that is known:
 *  - parity: anime-girl-1 against rembg's published isnet-general-use alpha;
 *  - composites: fixture subjects pasted by their alpha onto new backgrounds,
 *    so the composite's true alpha and foreground colours are known exactly
 *    (the foreground under soft edges is filled in from the opaque subject).
 * Then times each added step against the baseline removal at 2 and 12 MP.
 * Its preview section (issue 14) scores the 512² preview model and a 768²
 * variant against the 1024² model, at the sizes they would serve. Its passes
 * section (issue 15, bench/qualityPasses.ts) scores quality=fast, auto and
 * high, with composites whose subject is small.
 *
 *   npm run bench:quality            (node dist/bench/quality.js [--quick] [--timing-only] [--preview-only] [--passes-only])
 *
 * Prints tables and, last, one JSON line with every figure (also written to bench/.results/).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../functions/config';
import { findModel, type ModelEntry } from '../functions/model/registry';
import type { ModelOutput } from '../functions/model/tensors';
import { PROJECT_ROOT } from '../functions/paths';
import { averageMirrored, mirrorInput } from '../functions/pipeline/augment';
import { decodeImage } from '../functions/pipeline/decode';
import { encode } from '../functions/pipeline/encode';
import { estimateForeground } from '../functions/pipeline/colourEstimation';
import { cleanMask } from '../functions/pipeline/maskFilters';
import { fitMask, modelMask, postprocess } from '../functions/pipeline/postprocess';
import { preprocess } from '../functions/pipeline/preprocess';
import { defaultGuidedFilterOptions, type GuidedFilterOptions, refineMask } from '../functions/pipeline/refine';
import { sharp } from '../functions/pipeline/sharp';
import type { AlphaMask, DecodedImage } from '../functions/pipeline/types';
import { alphaChannel, compareAlpha, fixture } from '../tools/lib/images';
import { fittedSize } from '../functions/pipeline/size';
import { createSession, inputTensor, resizedSession, runOnce, type BenchSession } from './floor';
import { benchImage } from './images';
import { loadAverage, median, round, timed } from './stats';
import { passesSection, printPasses } from './qualityPasses';
import { BACKGROUNDS, type Case, composite, type Group, GROUPS, MAX_PIXELS, pureForeground, smallSubjectCases, type Subject } from './qualityCases';

const RESULTS_DIR = path.join(PROJECT_ROOT, 'bench', '.results');
const quick = process.argv.includes('--quick');

/** Both model maps for one image: plain and of the mirrored input. */
interface Maps {
  plain: ModelOutput;
  mirrored: ModelOutput;
}

async function modelMaps(session: BenchSession, entry: ModelEntry, image: DecodedImage): Promise<Maps> {
  const input = await preprocess(image, entry);
  const mirroredInput = mirrorInput(input);
  const plain = { size: input.size, data: await runOnce(session, inputTensor(input)) };
  const mirrored = { size: input.size, data: await runOnce(session, inputTensor(mirroredInput)) };
  return { plain, mirrored };
}

/**
 * anime-girl-1 keeps rembg's published alpha as its truth; car-1 and cloth-1
 * use our own baseline cutout of the original photo. Either way the composite
 * is made with that alpha, so it is the composite's exact alpha.
 */
async function buildCases(session: BenchSession, entry: ModelEntry): Promise<{ cases: Case[]; subjects: Subject[] }> {
  const published = (await alphaChannel(fixture('anime-girl-1.isnet-general-use.png'))).data;
  const anime = await decodeImage(fixture('anime-girl-1.jpg'), MAX_PIXELS);
  const cases: Case[] = [{ name: 'parity anime-girl-1', group: 'parity', image: anime, alpha: published, foreground: null }];
  const found: Subject[] = [];
  const subjects = quick ? ['anime-girl-1', 'car-1'] : ['anime-girl-1', 'car-1', 'cloth-1'];
  for (const subject of subjects) {
    const photo = subject === 'anime-girl-1' ? anime : await decodeImage(fixture(`${subject}.jpg`), MAX_PIXELS);
    const alpha = subject === 'anime-girl-1' ? published : (await postprocess((await modelMaps(session, entry, photo)).plain, entry.postprocess, photo)).alpha;
    const hardAlpha = Buffer.from(alpha.map((value) => (value >= 128 ? 255 : 0)));
    const foreground = pureForeground(photo, alpha);
    found.push({ name: subject, photo, alpha, foreground });
    for (const [backgroundName, background] of Object.entries(BACKGROUNDS)) {
      const backgroundRgb = await background(photo.width, photo.height);
      for (const [group, truth] of [['soft', alpha], ['hard', hardAlpha]] as const) {
        cases.push({
          name: `${subject} on ${backgroundName}${group === 'hard' ? ' (hard)' : ''}`,
          group,
          image: { width: photo.width, height: photo.height, sourceWidth: photo.width, sourceHeight: photo.height, rgb: composite(foreground, truth, backgroundRgb), alpha: null, format: 'raw' },
          alpha: truth,
          foreground,
        });
      }
    }
  }
  return { cases, subjects: found };
}

/** The band the colour error is taken over: true alpha within 5–95%, where the old background's share is large enough to see. */
const COLOUR_BAND = { low: 13, high: 242 };

/**
 * Mean |RGB error| against the true foreground over the band, weighted by
 * the true alpha (how visible the colour is), in levels of 0–255.
 */
function foregroundError(estimate: Buffer, truth: Buffer, alpha: Buffer): number {
  let error = 0;
  let weight = 0;
  for (let pixel = 0; pixel < alpha.length; pixel += 1) {
    const a = alpha[pixel]!;
    if (a < COLOUR_BAND.low || a > COLOUR_BAND.high) continue;
    for (let channel = 0, index = pixel * 3; channel < 3; channel += 1, index += 1) error += a * Math.abs(estimate[index]! - truth[index]!);
    weight += 3 * a;
  }
  return weight === 0 ? 0 : error / weight;
}

const baseline = (image: DecodedImage, maps: Maps, entry: ModelEntry): Promise<AlphaMask> => postprocess(maps.plain, entry.postprocess, image);
const high = (image: DecodedImage, maps: Maps, entry: ModelEntry): Promise<AlphaMask> => postprocess(averageMirrored(maps.plain, maps.mirrored), entry.postprocess, image);

/** Guided-filter settings as the tuning grid states them: the radius relative to the default for the image's size. */
interface RefineSetting {
  radiusScale: number;
  epsilon: number;
  binarise: boolean;
  bandOnly: boolean;
}

function refineOptions(setting: RefineSetting | null, width: number, height: number): Partial<GuidedFilterOptions> {
  if (!setting) return {};
  const radius = Math.max(1, Math.round(defaultGuidedFilterOptions(width, height).radius * setting.radiusScale));
  return { radius, epsilon: setting.epsilon, binarise: setting.binarise, bandOnly: setting.bandOnly, subsample: Math.max(1, Math.round(radius / 4)) };
}

function variants(tuned: RefineSetting): Record<string, (image: DecodedImage, maps: Maps, entry: ModelEntry) => Promise<AlphaMask>> {
  const refineTuned = (image: DecodedImage, mask: AlphaMask): AlphaMask => refineMask(image, mask, refineOptions(tuned, image.width, image.height));
  return {
    baseline,
    'post_process (output size)': async (image, maps, entry) => cleanMask(await baseline(image, maps, entry)),
    'post_process (1024²)': (image, maps, entry) => fitMask(cleanMask(modelMask(maps.plain, entry.postprocess)), image),
    'refine (default)': async (image, maps, entry) => refineMask(image, await baseline(image, maps, entry)),
    'refine (best of grid)': async (image, maps, entry) => refineTuned(image, await baseline(image, maps, entry)),
    // The fast guided filter's grid at the model's own pixel size: the mask has no finer detail than that.
    'refine (grid = model pixel)': async (image, maps, entry) =>
      refineMask(image, await baseline(image, maps, entry), { subsample: Math.max(1, Math.round(Math.max(image.width, image.height) / entry.inputSize)) }),
    'quality=high': high,
    'high + refine (default)': async (image, maps, entry) => refineMask(image, await high(image, maps, entry)),
  };
}

interface Score {
  mae: number;
  iou: number;
}

function meanScore(scores: readonly Score[]): Score {
  return { mae: round(scores.reduce((sum, row) => sum + row.mae, 0) / scores.length, 5), iou: round(scores.reduce((sum, row) => sum + row.iou, 0) / scores.length, 4) };
}

type GroupScores = Record<Group, Score>;

function byGroup(cases: readonly Case[], scores: readonly Score[]): GroupScores {
  const entries = GROUPS.map((group) => [group, meanScore(scores.filter((_, index) => cases[index]!.group === group))] as const);
  return Object.fromEntries(entries) as GroupScores;
}

interface QualityRow {
  variant: string;
  groups: GroupScores;
  perCase: ({ name: string } & Score)[];
}

async function scoreVariants(cases: readonly Case[], maps: ReadonlyMap<string, Maps>, entry: ModelEntry, tuned: RefineSetting): Promise<QualityRow[]> {
  const rows: QualityRow[] = [];
  for (const [variant, make] of Object.entries(variants(tuned))) {
    const perCase = [];
    for (const item of cases) {
      const { mae, iou } = compareAlpha((await make(item.image, maps.get(item.name)!, entry)).alpha, item.alpha);
      perCase.push({ name: item.name, mae: round(mae, 5), iou: round(iou, 4) });
    }
    rows.push({ variant, groups: byGroup(cases, perCase), perCase });
  }
  return rows;
}

interface TuningRow {
  options: RefineSetting;
  groups: GroupScores;
}

/** A small grid around the default radius, on every case (the parity image shows what refine costs in rembg-likeness). */
async function tuneRefine(cases: readonly Case[], maps: ReadonlyMap<string, Maps>, entry: ModelEntry): Promise<TuningRow[]> {
  const baselines = new Map<string, AlphaMask>();
  for (const item of cases) baselines.set(item.name, await baseline(item.image, maps.get(item.name)!, entry));
  const results: TuningRow[] = [];
  for (const radiusScale of quick ? [1, 2] : [0.5, 1, 2, 4]) {
    for (const epsilon of quick ? [1e-3] : [1e-4, 1e-3, 1e-2]) {
      for (const [binarise, bandOnly] of [
        [false, false],
        [false, true],
        [true, false],
        [true, true],
      ] as const) {
        const setting = { radiusScale, epsilon, binarise, bandOnly };
        const scores = cases.map((item) => compareAlpha(refineMask(item.image, baselines.get(item.name)!, refineOptions(setting, item.image.width, item.image.height)).alpha, item.alpha));
        results.push({ options: setting, groups: byGroup(cases, scores) });
      }
    }
  }
  return results;
}

interface ColourRow {
  name: string;
  imageColours: number;
  estimatedWithModelAlpha: number;
  estimatedWithRefinedAlpha: number;
  estimatedWithTrueAlpha: number;
}

async function colourErrors(cases: readonly Case[], maps: ReadonlyMap<string, Maps>, entry: ModelEntry) {
  const rows: ColourRow[] = [];
  for (const item of cases) {
    if (item.group !== 'soft' || !item.foreground) continue;
    const predicted = await baseline(item.image, maps.get(item.name)!, entry);
    const refined = refineMask(item.image, predicted);
    rows.push({
      name: item.name,
      imageColours: round(foregroundError(item.image.rgb, item.foreground, item.alpha), 2),
      estimatedWithModelAlpha: round(foregroundError(estimateForeground(item.image, predicted.alpha), item.foreground, item.alpha), 2),
      estimatedWithRefinedAlpha: round(foregroundError(estimateForeground(item.image, refined.alpha), item.foreground, item.alpha), 2),
      estimatedWithTrueAlpha: round(foregroundError(estimateForeground(item.image, item.alpha), item.foreground, item.alpha), 2),
    });
  }
  const mean = (key: Exclude<keyof ColourRow, 'name'>): number => round(rows.reduce((sum, row) => sum + row[key], 0) / rows.length, 2);
  return { perCase: rows, imageColours: mean('imageColours'), estimatedWithModelAlpha: mean('estimatedWithModelAlpha'), estimatedWithRefinedAlpha: mean('estimatedWithRefinedAlpha'), estimatedWithTrueAlpha: mean('estimatedWithTrueAlpha') };
}

interface SizedModel {
  label: string;
  entry: ModelEntry;
  session: BenchSession;
}

/** A case at most `maxPixels` large, as `size` makes it: the image and its true alpha resized as decode and postprocess resize. */
async function scaledCase(item: Case, maxPixels: number): Promise<{ image: DecodedImage; alpha: Buffer }> {
  const fitted = fittedSize(item.image, maxPixels);
  if (!fitted) return { image: item.image, alpha: item.alpha };
  const { width, height } = fitted;
  // A resized 1-channel raw image comes back with 3 channels unless told otherwise.
  const alpha = await sharp(item.alpha, { raw: { width: item.image.width, height: item.image.height, channels: 1 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .extractChannel(0)
    .raw()
    .toBuffer();
  const rgb = await sharp(item.image.rgb, { raw: { width: item.image.width, height: item.image.height, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();
  return { image: { ...item.image, width, height, sourceWidth: width, sourceHeight: height, rgb }, alpha };
}

interface SizeComparison {
  output: string;
  maxPixels: number;
  rows: { model: string; inputSize: number; groups: GroupScores; composites: Score }[];
  /** The smaller model's mask against the 1024² model's, as if the latter were the truth. */
  agreement: Score;
}

/**
 * The preview question: at a result of at most 0.25 MP (size=preview, or a
 * small image), does the 512² model lose anything against the 1024² one?
 * And at 1.5 MP (size=medium), the 768² variant. Each model runs on the case
 * resized as the service would resize it, and is scored against the truth
 * resized alike. The truths of car-1 and cloth-1 are the 1024² model's own
 * mask of the original photo, and anime-girl-1's is rembg's 1024² IS-Net: the
 * 1024² model plays at home, so a draw here is a strong result.
 */
async function compareSizes(cases: readonly Case[], output: string, maxPixels: number, models: readonly SizedModel[]): Promise<SizeComparison> {
  const alphas = models.map(() => [] as Buffer[]);
  const truths: Buffer[] = [];
  for (const item of cases) {
    const { image, alpha } = await scaledCase(item, maxPixels);
    truths.push(alpha);
    for (const [index, { entry, session }] of models.entries()) {
      const map = { size: entry.inputSize, data: await runOnce(session, inputTensor(await preprocess(image, entry))) };
      alphas[index]!.push((await postprocess(map, entry.postprocess, image)).alpha);
    }
  }
  const composites = cases.map((item) => item.group !== 'parity');
  const rows = models.map(({ label, entry }, index) => {
    const scores = cases.map((_, caseIndex) => compareAlpha(alphas[index]![caseIndex]!, truths[caseIndex]!));
    return { model: label, inputSize: entry.inputSize, groups: byGroup(cases, scores), composites: meanScore(scores.filter((_, caseIndex) => composites[caseIndex])) };
  });
  const agreement = meanScore(cases.map((_, caseIndex) => compareAlpha(alphas[1]![caseIndex]!, alphas[0]![caseIndex]!)));
  return { output, maxPixels, rows, agreement };
}

function printSizes(comparison: SizeComparison): void {
  console.log(`
${comparison.output}: alpha against the truth at that size (composites = soft and hard together)`);
  console.log(`${'model'.padEnd(30)}${GROUPS.map((group) => `${`${group} MAE`.padStart(10)}${'IoU'.padStart(8)}`).join('  ')}  ${'composites MAE'.padStart(14)}${'IoU'.padStart(8)}`);
  for (const row of comparison.rows) {
    const cells = GROUPS.map((group) => `${row.groups[group].mae.toFixed(5).padStart(10)}${row.groups[group].iou.toFixed(4).padStart(8)}`).join('  ');
    console.log(`${row.model.padEnd(30)}${cells}  ${row.composites.mae.toFixed(5).padStart(14)}${row.composites.iou.toFixed(4).padStart(8)}`);
  }
  const [full, smaller] = comparison.rows as [SizeComparison['rows'][number], SizeComparison['rows'][number]];
  console.log(`  composites IoU, ${smaller.model} − ${full.model}: ${(smaller.composites.iou - full.composites.iou).toFixed(4)}; the two masks against each other: IoU ${comparison.agreement.iou.toFixed(4)}, MAE ${comparison.agreement.mae.toFixed(5)}`);
}

async function previewSection(cases: readonly Case[], session: BenchSession, entry: ModelEntry, settings: ReturnType<typeof loadConfig>) {
  const preview = findModel('isnet-preview')!;
  const full: SizedModel = { label: `${entry.name} (${entry.inputSize}²)`, entry, session };
  const small: SizedModel = { label: `${preview.name} (${preview.inputSize}²)`, entry: preview, session: await createSession(preview, settings) };
  const atPreview = await compareSizes(cases, 'size=preview (0.25 MP)', 250_000, [full, small]);
  await small.session.session.release();
  const medium = await resizedSession(entry, settings, 768);
  const atMedium = await compareSizes(cases, 'size=medium (1.5 MP; every fixture is smaller, so its own size)', 1_500_000, [full, { label: `${entry.name} at 768²`, ...medium }]);
  await medium.session.session.release();
  for (const comparison of [atPreview, atMedium]) printSizes(comparison);
  return { atPreview, atMedium };
}

async function medianMs<T>(reps: number, work: () => T | Promise<T>): Promise<number> {
  await work();
  const samples: number[] = [];
  for (let rep = 0; rep < reps; rep += 1) samples.push((await timed(async () => work())).ms);
  return round(median(samples));
}

/**
 * CPU time of a synchronous single-threaded step: on a shared machine other
 * processes stretch wall time, but much less the CPU time this thread used.
 */
function medianCpuMs(reps: number, work: () => unknown): number {
  work();
  const samples: number[] = [];
  for (let rep = 0; rep < reps; rep += 1) {
    const before = process.cpuUsage();
    work();
    const used = process.cpuUsage(before);
    samples.push((used.user + used.system) / 1000);
  }
  return round(median(samples));
}

/** Each added step against the removal it is added to: decode → preprocess → infer → postprocess → PNG encode. */
async function timings(session: BenchSession, entry: ModelEntry) {
  const reps = quick ? 2 : 4;
  const rows = [];
  for (const name of ['photo-2mp', 'photo-12mp']) {
    const bytes = (await benchImage(name)).bytes;
    const image = await decodeImage(bytes, MAX_PIXELS);
    const input = await preprocess(image, entry);
    const output = { size: input.size, data: await runOnce(session, inputTensor(input)) };
    const mask = await postprocess(output, entry.postprocess, image);
    const modelPixel = Math.max(1, Math.round(Math.max(image.width, image.height) / entry.inputSize));
    const removalMs = await medianMs(reps, async () => {
      const decoded = await decodeImage(bytes, MAX_PIXELS);
      const tensor = inputTensor(await preprocess(decoded, entry));
      const map = { size: input.size, data: await runOnce(session, tensor) };
      await encode(decoded, await postprocess(map, entry.postprocess, decoded), { format: 'png', channels: 'rgba' });
    });
    const inferMs = await medianMs(reps, () => runOnce(session, inputTensor(input)));
    const steps = {
      'post_process (output size)': await medianMs(reps, () => cleanMask(mask)),
      'post_process (1024²)': await medianMs(reps, () => fitMask(cleanMask(modelMask(output, entry.postprocess)), image)),
      'post_process (1024²), over fitMask': 0,
      refineMask: await medianMs(reps, () => refineMask(image, mask)),
      'refineMask (grid = model pixel)': await medianMs(reps, () => refineMask(image, mask, { subsample: modelPixel })),
      estimateForeground: await medianMs(reps, () => estimateForeground(image, mask.alpha)),
      'mirror + average': await medianMs(reps, () => averageMirrored(output, mirrorInput(input))),
      'quality=high (+1 inference + mirror + average)': 0,
    };
    const fitMs = await medianMs(reps, () => fitMask(modelMask(output, entry.postprocess), image));
    const cpuMs = {
      'post_process (output size)': medianCpuMs(reps, () => cleanMask(mask)),
      'post_process (1024²), over fitMask': medianCpuMs(reps, () => cleanMask(modelMask(output, entry.postprocess))),
      refineMask: medianCpuMs(reps, () => refineMask(image, mask)),
      'refineMask (grid = model pixel)': medianCpuMs(reps, () => refineMask(image, mask, { subsample: modelPixel })),
      estimateForeground: medianCpuMs(reps, () => estimateForeground(image, mask.alpha)),
      'mirror + average': medianCpuMs(reps, () => averageMirrored(output, mirrorInput(input))),
    };
    steps['post_process (1024²), over fitMask'] = round(steps['post_process (1024²)'] - fitMs);
    steps['quality=high (+1 inference + mirror + average)'] = round(inferMs + steps['mirror + average']);
    let fractional = 0;
    for (const value of mask.alpha) if (value >= 8 && value <= 247) fractional += 1;
    rows.push({
      image: name,
      megapixels: round((image.width * image.height) / 1e6, 2),
      fractionalAlphaShare: round(fractional / mask.alpha.length, 4),
      removalMs,
      inferMs,
      steps: Object.entries(steps).map(([step, ms]) => ({ step, ms, ratio: round(ms / removalMs, 3), cpuMs: (cpuMs as Record<string, number | undefined>)[step] ?? null })),
    });
  }
  return rows;
}

function printTimings(time: Awaited<ReturnType<typeof timings>>): void {
  console.log('\ntime of each added step against the baseline removal (decode → preprocess → infer → postprocess → PNG)');
  for (const row of time) {
    console.log(`${row.image} (${row.megapixels} MP, ${(row.fractionalAlphaShare * 100).toFixed(1)}% of alpha in 3–97%): removal ${row.removalMs.toFixed(0)} ms, inference ${row.inferMs.toFixed(0)} ms`);
    for (const step of row.steps) {
      console.log(`  ${step.step.padEnd(48)}${step.ms.toFixed(1).padStart(9)} ms  ${step.ratio.toFixed(3).padStart(7)}×${step.cpuMs === null ? '' : `   cpu ${step.cpuMs.toFixed(1)} ms`}`);
    }
  }
}

async function main(): Promise<void> {
  const loadBefore = loadAverage();
  const started = Date.now();
  const settings = loadConfig(process.env);
  const entry = findModel(settings.model)!;
  const session = await createSession(entry, settings);
  console.error(`model ${entry.name}, load average ${loadBefore.join(' ')}`);

  if (process.argv.includes('--timing-only')) {
    const time = await timings(session, entry);
    printTimings(time);
    await session.session.release();
    console.log(`\n${JSON.stringify({ model: entry.name, date: new Date().toISOString(), quick, loadAverageBefore: loadBefore, loadAverageAfter: loadAverage(), time })}`);
    return;
  }

  const { cases, subjects } = await buildCases(session, entry);
  if (process.argv.includes('--passes-only')) {
    const passes = await passesSection([...cases, ...(await smallSubjectCases(subjects))], session, entry);
    printPasses(passes);
    await session.session.release();
    console.log(`\n${JSON.stringify({ model: entry.name, date: new Date().toISOString(), quick, loadAverageBefore: loadBefore, passes })}`);
    return;
  }
  if (process.argv.includes('--preview-only')) {
    const preview = await previewSection(cases, session, entry, settings);
    await session.session.release();
    console.log(`\n${JSON.stringify({ model: entry.name, date: new Date().toISOString(), quick, loadAverageBefore: loadBefore, preview })}`);
    return;
  }
  const maps = new Map<string, Maps>();
  for (const item of cases) {
    console.error(`  inferring ${item.name}`);
    maps.set(item.name, await modelMaps(session, entry, item.image));
  }

  const tuning = await tuneRefine(cases, maps, entry);
  const scoreCells = (groups: GroupScores): string => GROUPS.map((group) => `${groups[group].mae.toFixed(5).padStart(10)}${groups[group].iou.toFixed(4).padStart(8)}`).join('  ');
  const groupHeader = GROUPS.map((group) => `${`${group} MAE`.padStart(10)}${'IoU'.padStart(8)}`).join('  ');
  console.log('\nrefine tuning (radius = scale × default; default radius = 2 px per 1024 px of long side)');
  console.log(`radius×  epsilon  binarise  bandOnly ${groupHeader}`);
  for (const row of tuning) {
    const { radiusScale, epsilon, binarise, bandOnly } = row.options;
    console.log(`${String(radiusScale).padStart(7)}${String(epsilon).padStart(9)}${String(binarise).padStart(10)}${String(bandOnly).padStart(10)}${scoreCells(row.groups)}`);
  }
  // Soft and hard truths weigh the same: one favours the model's blur, the other sharp edges.
  const best = tuning.reduce((winner, row) => (row.groups.soft.mae + row.groups.hard.mae < winner.groups.soft.mae + winner.groups.hard.mae ? row : winner));
  console.log(`best of grid (least soft + hard MAE): ${JSON.stringify(best.options)}`);

  const quality = await scoreVariants(cases, maps, entry, best.options);
  const count = (group: Group): number => cases.filter((item) => item.group === group).length;
  console.log(`\nalpha against the truth: mean of ${count('soft')} soft and ${count('hard')} hard composites, and the parity image`);
  console.log(`${'variant'.padEnd(28)}${groupHeader}`);
  for (const row of quality) console.log(`${row.variant.padEnd(28)}${scoreCells(row.groups)}`);
  console.log(`\nper case MAE / IoU: ${quality.map((row) => row.variant).join(' | ')}`);
  for (const [index, item] of cases.entries()) {
    console.log(`${item.name.padEnd(33)}${quality.map((row) => `${row.perCase[index]!.mae.toFixed(4)}/${row.perCase[index]!.iou.toFixed(3)}`.padStart(15)).join('')}`);
  }

  const colour = await colourErrors(cases, maps, entry);
  console.log('\nforeground colour error where the true alpha is 5–95% (mean |ΔRGB| in levels, weighted by true alpha)');
  console.log('case                        image colours  estimated (model α)  (refined α)  (true α)');
  for (const row of colour.perCase) {
    console.log(`${row.name.padEnd(26)}${row.imageColours.toFixed(2).padStart(15)}${row.estimatedWithModelAlpha.toFixed(2).padStart(21)}${row.estimatedWithRefinedAlpha.toFixed(2).padStart(13)}${row.estimatedWithTrueAlpha.toFixed(2).padStart(10)}`);
  }
  console.log(`${'mean'.padEnd(26)}${colour.imageColours.toFixed(2).padStart(15)}${colour.estimatedWithModelAlpha.toFixed(2).padStart(21)}${colour.estimatedWithRefinedAlpha.toFixed(2).padStart(13)}${colour.estimatedWithTrueAlpha.toFixed(2).padStart(10)}`);

  const preview = await previewSection(cases, session, entry, settings);
  const passes = await passesSection([...cases, ...(await smallSubjectCases(subjects))], session, entry);
  printPasses(passes);

  const time = await timings(session, entry);
  printTimings(time);
  await session.session.release();

  const record = { model: entry.name, date: new Date().toISOString(), quick, loadAverageBefore: loadBefore, loadAverageAfter: loadAverage(), durationS: round((Date.now() - started) / 1000), tuning, bestRefine: best.options, quality, colour, preview, passes, time };
  console.log(`\n${JSON.stringify(record)}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(path.join(RESULTS_DIR, `quality-${record.date.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(record, null, 1)}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
