/**
 * The preview model's costs (issue 14): one inference at 512² (isnet-preview)
 * and 768² (isnet-fp32 rewritten by resize-input here, in memory, never
 * shipped) against 1024² (isnet-fp32), and the peak and resident memory of a
 * server that holds the preview alone, the full model alone, or both.
 * The masks are compared by `npm run bench:quality` (its preview section).
 *
 *   npm run bench:preview          (node dist/bench/preview.js [--rounds N] [--timing-only] [--memory-only])
 *
 * The timings interleave the sizes, one run of each per round, so that other
 * work on a shared machine slows them alike; the load average is printed.
 */
import os from 'node:os';
import { loadConfig } from '../functions/config';
import { findModel, type ModelEntry } from '../functions/model/registry';
import { decodeImage } from '../functions/pipeline/decode';
import { preprocess } from '../functions/pipeline/preprocess';
import { bodyBytes, postImage } from '../tools/lib/http';
import { fixture } from '../tools/lib/images';
import { type BenchSession, createSession, inputTensor, resizedSession, runOnce } from './floor';
import { benchImage } from './images';
import { DEPLOYED_ENV, spawnServer, waitForHealth, warmup } from './server-process';
import { loadAverage, median, peakRssMiB, percentile, resetPeakRss, round, rssMiB } from './stats';

const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index === -1 ? undefined : process.argv[index + 1];
};
const ROUNDS = Number(argument('--rounds') ?? 7);

interface Sized {
  label: string;
  entry: ModelEntry;
  session: BenchSession;
}

async function timing(): Promise<Record<string, { p50: number; p10: number; p90: number; samples: number[] }>> {
  const config = loadConfig(process.env);
  const fp32 = findModel('isnet-fp32')!;
  const preview = findModel('isnet-preview')!;
  const sized: Sized[] = [
    { label: '512² (isnet-preview)', entry: preview, session: await createSession(preview, config) },
    { label: '768² (resize-input, not shipped)', ...(await resizedSession(fp32, config, 768)) },
    { label: '1024² (isnet-fp32)', entry: fp32, session: await createSession(fp32, config) },
  ];
  const image = await decodeImage(fixture('anime-girl-1.jpg'), { maxInputPixels: Number.MAX_SAFE_INTEGER });
  const tensors = await Promise.all(sized.map(async ({ entry }) => inputTensor(await preprocess(image, entry))));
  // One untimed run each: the first run allocates what later ones reuse.
  for (const [index, { session }] of sized.entries()) await runOnce(session, tensors[index]!);
  const samples = sized.map(() => [] as number[]);
  for (let round_ = 0; round_ < ROUNDS; round_ += 1) {
    for (const [index, { session }] of sized.entries()) {
      const started = performance.now();
      await runOnce(session, tensors[index]!);
      samples[index]!.push(performance.now() - started);
    }
  }
  for (const { session } of sized) await session.session.release();
  return Object.fromEntries(
    sized.map(({ label }, index) => {
      const runs = samples[index]!;
      return [label, { p50: round(median(runs)), p10: round(percentile(runs, 0.1)), p90: round(percentile(runs, 0.9)), samples: runs.map((ms) => round(ms)) }];
    }),
  );
}

/** One removal; its X-Model says which model ran. */
async function removalModel(url: string, bytes: Buffer, query: string): Promise<string> {
  const response = await postImage(`${url}/remove-background${query}`, bytes, 'image/jpeg');
  await bodyBytes(response);
  if (response.status !== 200) throw new Error(`${query}: HTTP ${response.status}`);
  return response.headers.get('x-model') ?? '?';
}

/**
 * A fresh server per case, as `npm run bench` measures the registry's
 * peakMiB: the peak of load + warmup (one inference), and what stays
 * resident. With both models, a preview removal then loads the preview
 * beside the full model, and a full removal runs with both loaded.
 */
async function memory(): Promise<Record<string, number | string>> {
  const photo = (await benchImage('photo-2mp')).bytes;
  const figures: Record<string, number | string> = {};
  for (const [label, env] of [
    ['preview alone', { MODEL: 'isnet-preview' }],
    ['full alone', { MODEL: 'isnet-fp32', PREVIEW_MODEL: 'off' }],
  ] as const) {
    const server = await spawnServer({ ...DEPLOYED_ENV, ...env });
    try {
      await waitForHealth(server);
      await warmup(server);
      figures[`${label}: load + warmup peak MiB`] = round(await peakRssMiB(server.pid));
      figures[`${label}: resident after MiB`] = round(await rssMiB(server.pid));
      await resetPeakRss(server.pid);
      figures[`${label}: model of a 2 MP removal`] = await removalModel(server.url, photo, '');
      figures[`${label}: peak of the 2 MP removal MiB`] = round(await peakRssMiB(server.pid));
    } finally {
      await server.stop();
    }
  }
  const server = await spawnServer({ ...DEPLOYED_ENV, MODEL: 'isnet-fp32', PREVIEW_MODEL: 'auto' });
  try {
    await waitForHealth(server);
    await warmup(server);
    figures['both: full loaded + warmup peak MiB'] = round(await peakRssMiB(server.pid));
    const fullResident = await rssMiB(server.pid);
    figures['both: resident with the full model loaded MiB'] = round(fullResident);
    figures['both: model of a size=preview removal'] = await removalModel(server.url, photo, '?size=preview');
    const bothResident = await rssMiB(server.pid);
    figures['both: resident with both loaded MiB'] = round(bothResident);
    figures['both: what the loaded preview adds MiB'] = round(bothResident - fullResident);
    figures['both: peak so far MiB'] = round(await peakRssMiB(server.pid));
    await resetPeakRss(server.pid);
    figures['both: model of a 2 MP removal'] = await removalModel(server.url, photo, '');
    figures['both: peak of the 2 MP removal with both loaded MiB'] = round(await peakRssMiB(server.pid));
    figures['both: resident after MiB'] = round(await rssMiB(server.pid));
  } finally {
    await server.stop();
  }
  return figures;
}

async function main(): Promise<void> {
  const before = loadAverage();
  const record: Record<string, unknown> = { date: new Date().toISOString(), loadAverageBefore: before, cpus: os.availableParallelism() };
  if (!process.argv.includes('--memory-only')) {
    const time = await timing();
    console.log(`one inference (session.run), ${ROUNDS} interleaved rounds, load average before ${before.join(' ')}`);
    for (const [label, figures] of Object.entries(time)) {
      console.log(`  ${label.padEnd(34)} p50 ${figures.p50.toFixed(0).padStart(5)} ms  p10 ${figures.p10.toFixed(0).padStart(5)}  p90 ${figures.p90.toFixed(0).padStart(5)}`);
    }
    record.timing = time;
  }
  if (!process.argv.includes('--timing-only')) {
    const figures = await memory();
    console.log('memory (spawned servers, MALLOC_ARENA_MAX=2)');
    for (const [label, value] of Object.entries(figures)) console.log(`  ${label.padEnd(56)} ${value}`);
    record.memory = figures;
  }
  record.loadAverageAfter = loadAverage();
  console.log(JSON.stringify(record));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
