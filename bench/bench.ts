/**
 * `npm run bench`: how close the service comes to the model's own speed, what
 * it costs in memory, and how fast a new instance answers.
 *
 *   node dist/bench/bench.js [--models isnet-fp16,isnet-uint8] [--quick] [--peer-dir /tmp/peer] [--only model,reuse,cli]
 *                            [--cli-images N] [--cli-only]
 *
 * For each model: the inference floor (in this process), then the real server
 * in a child process over loopback HTTP: cold start, warm latency per image,
 * the per-stage split from Server-Timing, response sizes per format, and peak
 * RSS. For the first model, then, the preview model and the mask cache against
 * the same server without them, and the peer ratio (bench/reuse.ts); and the
 * CLI's throughput through --endpoint at concurrency 1, 2 and 4 over N images
 * (bench/cliThroughput.ts; --cli-only runs that section alone). Prints a table
 * per section and, last, one JSON line with every figure.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig, MEMORY_MARGIN } from '../functions/config';
import { findModel, registry } from '../functions/model/registry';
import { checkWeights } from '../functions/model/weights';
import { type BenchImage, benchImages, smallSubjectImage } from './images';
import { type CliThroughputResult, measureCliThroughput, printCliThroughput } from './cliThroughput';
import { type FloorResult, measureFloor } from './floor';
import { measureReuse, printReuse, type ReuseResult } from './reuse';
import { DEPLOYED_ENV, removal, type RemovalSample, type ServerProcess, spawnServer, waitForHealth, warmup } from './server-process';
import { loadAverage, median, pad, percentile, peakRssMiB, resetPeakRss, round, rssMiB } from './stats';

const STAGES = ['decode', 'load', 'preprocess', 'queue', 'infer', 'postprocess', 'encode'] as const;
const LARGE_IMAGE_PIXELS = 4_000_000;
const FORMAT_QUERIES = ['?format=png', '?format=webp', '?format=jpeg', '?format=zip', '?channels=alpha&format=png', '?channels=alpha&format=webp'] as const;
const FORMAT_IMAGE = 'anime-girl-1';
const COLD_IMAGE = 'anime-girl-1';
const RSS_IMAGE = 'photo-12mp';
const IN_FLIGHT = 4;
/** What the memory budget lets a 2 GiB instance use: 80% of it (config.ts MEMORY_MARGIN). */
const TIER_BUDGET_MIB = Math.floor(2 * 1024 * (1 - MEMORY_MARGIN));

interface Iterations {
  floor: number;
  small: number;
  large: number;
  cold: number;
  formats: number;
  rssSequential: number;
  /** Images each CLI run sends. */
  cliImages: number;
}

const FULL: Iterations = { floor: 10, small: 10, large: 8, cold: 3, formats: 3, rssSequential: 3, cliImages: 16 };
const QUICK: Iterations = { floor: 4, small: 3, large: 2, cold: 1, formats: 1, rssSequential: 1, cliImages: 4 };

interface ImageResult {
  image: string;
  width: number;
  height: number;
  megapixels: number;
  inputBytes: number;
  n: number;
  /** With the default settings (quality=auto since issue 15). */
  p50Ms: number;
  p95Ms: number;
  /** quality=fast, the old default: one inference, so the service's overhead over the floor is taken from it. */
  fastP50Ms: number;
  /** The share of default-setting samples whose X-Quality says the zoomed pass ran. */
  zoomedShare: number;
  overhead: number;
  /** Median of (latency − infer stage): the service's own cost, less sensitive than p50 to CPU contention. */
  nonInferP50Ms: number;
  stagesP50Ms: Record<string, number>;
}

interface ColdStart {
  n: number;
  spawnToHealthMs: number[];
  spawnToFirstRemovalMs: number[];
  loadMs: number[];
  firstInferMs: number[];
}

interface MemoryResult {
  loadPeakMiB: number;
  residentAfterWarmupMiB: number;
  sequential12mpPeakMiB: number;
  inFlight12mpPeakMiB: number;
  inFlightWallMs: number;
  warmupLoadMs: number;
}

interface TargetCheck {
  target: string;
  measured: string;
  pass: boolean;
}

interface ModelResult {
  model: string;
  floor: { medianMs: number; samplesMs: number[]; createMs: number; firstRunMs: number; threads: number };
  images: ImageResult[];
  formats: { image: string; query: string; bytes: number; encodeMs: number; totalMs: number }[];
  cold: ColdStart & { medianSpawnToHealthMs: number; medianSpawnToFirstRemovalMs: number; medianLoadMs: number };
  memory: MemoryResult;
  targets: TargetCheck[];
}

function stageMedians(samples: readonly RemovalSample[]): Record<string, number> {
  const result: Record<string, number> = {};
  for (const stage of STAGES) {
    const values = samples.map((sample) => sample.stages[stage]).filter((value): value is number => value !== undefined);
    if (values.length > 0) result[stage] = round(median(values));
  }
  return result;
}

async function coldStart(model: string, image: BenchImage, reps: number): Promise<{ cold: ColdStart; server: ServerProcess }> {
  const cold: ColdStart = { n: reps, spawnToHealthMs: [], spawnToFirstRemovalMs: [], loadMs: [], firstInferMs: [] };
  for (let rep = 0; ; rep += 1) {
    const server = await spawnServer({ ...DEPLOYED_ENV, MODEL: model });
    cold.spawnToHealthMs.push(round(await waitForHealth(server)));
    const first = await removal(server, image);
    cold.spawnToFirstRemovalMs.push(round(first.finishedAt - server.spawnedAt));
    cold.loadMs.push(first.stages.load ?? Number.NaN);
    cold.firstInferMs.push(first.stages.infer ?? Number.NaN);
    // The last process stays up: it is warm now, and serves the warm measurements.
    if (rep === reps - 1) return { cold, server };
    await server.stop();
  }
}

async function warmLatency(server: ServerProcess, image: BenchImage, iterations: number, floorMs: number): Promise<ImageResult> {
  await removal(server, image);
  const samples: RemovalSample[] = [];
  const fastSamples: number[] = [];
  // Alternated, so that drift in machine load falls on both alike.
  for (let index = 0; index < iterations; index += 1) {
    samples.push(await removal(server, image));
    fastSamples.push((await removal(server, image, '?quality=fast')).ms);
  }
  const latencies = samples.map((sample) => sample.ms);
  const p50Ms = median(latencies);
  const fastP50Ms = median(fastSamples);
  return {
    image: image.name,
    width: image.width,
    height: image.height,
    megapixels: round((image.width * image.height) / 1e6, 2),
    inputBytes: image.bytes.length,
    n: iterations,
    p50Ms: round(p50Ms),
    p95Ms: round(percentile(latencies, 0.95)),
    fastP50Ms: round(fastP50Ms),
    zoomedShare: round(samples.filter((sample) => sample.passes.includes('zoomed')).length / samples.length, 2),
    overhead: round(fastP50Ms / floorMs, 3),
    nonInferP50Ms: round(median(samples.map((sample) => sample.ms - (sample.stages.infer ?? 0)))),
    stagesP50Ms: stageMedians(samples),
  };
}

async function formatSizes(server: ServerProcess, image: BenchImage, reps: number): Promise<ModelResult['formats']> {
  const results: ModelResult['formats'] = [];
  for (const query of FORMAT_QUERIES) {
    const samples: RemovalSample[] = [];
    for (let rep = 0; rep < reps; rep += 1) samples.push(await removal(server, image, query));
    results.push({
      image: image.name,
      query,
      bytes: samples[0]!.bytes,
      encodeMs: round(median(samples.map((sample) => sample.stages.encode ?? Number.NaN))),
      totalMs: round(median(samples.map((sample) => sample.ms))),
    });
  }
  return results;
}

/**
 * A fresh process: the peak while loading, then (after resetting the
 * high-water mark) while serving 12 MP images one at a time, then with
 * several in flight at once.
 */
async function memory(model: string, image: BenchImage, sequential: number, env: Record<string, string> = {}): Promise<MemoryResult> {
  const server = await spawnServer({ ...env, MODEL: model });
  try {
    await waitForHealth(server);
    const warm = await warmup(server);
    const loadPeakMiB = await peakRssMiB(server.pid);
    const residentAfterWarmupMiB = await rssMiB(server.pid);
    await resetPeakRss(server.pid);
    for (let index = 0; index < sequential; index += 1) await removal(server, image);
    const sequential12mpPeakMiB = await peakRssMiB(server.pid);
    await resetPeakRss(server.pid);
    const started = performance.now();
    await Promise.all(Array.from({ length: IN_FLIGHT }, () => removal(server, image)));
    const inFlightWallMs = performance.now() - started;
    const inFlight12mpPeakMiB = await peakRssMiB(server.pid);
    return {
      loadPeakMiB: round(loadPeakMiB),
      residentAfterWarmupMiB: round(residentAfterWarmupMiB),
      sequential12mpPeakMiB: round(sequential12mpPeakMiB),
      inFlight12mpPeakMiB: round(inFlight12mpPeakMiB),
      inFlightWallMs: round(inFlightWallMs),
      warmupLoadMs: warm.loadMs,
    };
  } finally {
    await server.stop();
  }
}

function targetChecks(result: Omit<ModelResult, 'targets'>): TargetCheck[] {
  const floorMs = result.floor.medianMs;
  const upTo2mp = result.images.filter((image) => image.megapixels <= 2.0);
  const worstSmall = upTo2mp.reduce((worst, image) => (image.overhead > worst.overhead ? image : worst), upTo2mp[0]!);
  const large = result.images.find((image) => image.image === RSS_IMAGE);
  const { memory: mem, cold } = result;
  // The load peak counts too: an instance killed while loading never serves anything.
  const sequentialPeak = Math.max(mem.loadPeakMiB, mem.sequential12mpPeakMiB);
  const inFlightPeak = Math.max(mem.loadPeakMiB, mem.inFlight12mpPeakMiB);
  const firstRemovalBudget = cold.medianLoadMs + 1.3 * floorMs;
  return [
    {
      target: 'warm p50 ≤ 1.15× floor, images ≤ 2 MP',
      measured: `worst ${worstSmall.overhead.toFixed(2)}× (${worstSmall.image})`,
      pass: upTo2mp.every((image) => image.overhead <= 1.15),
    },
    {
      target: '12 MP p50 ≤ floor + 600 ms',
      measured: large ? `${large.p50Ms.toFixed(0)} ms vs ${(floorMs + 600).toFixed(0)} ms` : 'not measured',
      pass: large !== undefined && large.p50Ms <= floorMs + 600,
    },
    // The 1.0 and 1.25 GiB targets of the first version were for 1 GiB instances; the CPU arena (on since 2 December) costs
    // 175-225 MiB more, and the deploy's tier is 2 GiB, whose budgeted 80% is what the instance must stay within.
    {
      target: `peak RSS, 12 MP one at a time ≤ ${TIER_BUDGET_MIB} MiB (80% of the 2 GiB tier)`,
      measured: `${sequentialPeak.toFixed(0)} MiB (load ${mem.loadPeakMiB.toFixed(0)}, serving ${mem.sequential12mpPeakMiB.toFixed(0)})`,
      pass: sequentialPeak <= TIER_BUDGET_MIB,
    },
    {
      target: `peak RSS, ${IN_FLIGHT} × 12 MP in flight ≤ ${TIER_BUDGET_MIB} MiB`,
      measured: `${inFlightPeak.toFixed(0)} MiB`,
      pass: inFlightPeak <= TIER_BUDGET_MIB,
    },
    {
      target: 'spawn → health 200 ≤ 300 ms',
      measured: `${cold.medianSpawnToHealthMs.toFixed(0)} ms`,
      pass: cold.medianSpawnToHealthMs <= 300,
    },
    {
      target: 'spawn → first removal ≤ load + 1.3× floor',
      measured: `${cold.medianSpawnToFirstRemovalMs.toFixed(0)} ms vs ${firstRemovalBudget.toFixed(0)} ms`,
      pass: cold.medianSpawnToFirstRemovalMs <= firstRemovalBudget,
    },
  ];
}

async function benchModel(model: string, images: BenchImage[], iterations: Iterations, log: (line: string) => void): Promise<ModelResult> {
  const entry = findModel(model)!;
  const config = loadConfig({ ...process.env, MODEL: model });
  const byName = (name: string): BenchImage => images.find((image) => image.name === name)!;

  // Half of the floor before the server runs and half after, so drift in machine load shows in both.
  log(`${model}: floor…`);
  const floorBefore = await measureFloor(entry, config, Math.ceil(iterations.floor / 2));

  log(`${model}: cold start ×${iterations.cold}…`);
  const { cold, server } = await coldStart(model, byName(COLD_IMAGE), iterations.cold);
  const imageResults: ImageResult[] = [];
  let formats: ModelResult['formats'];
  try {
    // The small subject only here: it shows what quality=auto's second look costs, and the other sections' figures stay comparable.
    for (const image of [...images, await smallSubjectImage()]) {
      log(`${model}: warm ${image.name}…`);
      const count = image.width * image.height > LARGE_IMAGE_PIXELS ? iterations.large : iterations.small;
      imageResults.push(await warmLatency(server, image, count, floorBefore.medianMs));
    }
    log(`${model}: formats…`);
    formats = await formatSizes(server, byName(FORMAT_IMAGE), iterations.formats);
  } finally {
    await server.stop();
  }

  log(`${model}: memory…`);
  const mem = await memory(model, byName(RSS_IMAGE), iterations.rssSequential, DEPLOYED_ENV);

  log(`${model}: floor again…`);
  const floorAfter = await measureFloor(entry, config, Math.floor(iterations.floor / 2));
  const floor = combineFloors(floorBefore, floorAfter);
  for (const image of imageResults) image.overhead = round(image.fastP50Ms / floor.medianMs, 3);

  const partial = {
    model,
    floor,
    images: imageResults,
    formats,
    cold: {
      ...cold,
      medianSpawnToHealthMs: round(median(cold.spawnToHealthMs)),
      medianSpawnToFirstRemovalMs: round(median(cold.spawnToFirstRemovalMs)),
      medianLoadMs: round(median(cold.loadMs)),
    },
    memory: mem,
  };
  return { ...partial, targets: targetChecks(partial) };
}

function combineFloors(before: FloorResult, after: FloorResult): ModelResult['floor'] {
  const samplesMs = [...before.samplesMs, ...after.samplesMs];
  return {
    medianMs: round(median(samplesMs)),
    samplesMs,
    createMs: round(median([before.createMs, after.createMs])),
    firstRunMs: round(median([before.firstRunMs, after.firstRunMs])),
    threads: before.threads,
  };
}

function printTable(result: ModelResult): void {
  const f = result.floor;
  console.log(`\n== ${result.model} ==  floor ${f.medianMs.toFixed(0)} ms (n=${f.samplesMs.length}, ${f.threads} threads; session create ${f.createMs.toFixed(0)} ms, first run ${f.firstRunMs.toFixed(0)} ms)`);
  console.log(
    `${'image'.padEnd(14)}${pad('MP', 6)}${pad('n', 4)}${pad('p50', 8)}${pad('p95', 8)}${pad('zoomed', 8)}${pad('fast', 8)}${pad('×floor', 8)}${pad('non-inf', 9)}` +
      STAGES.filter((stage) => stage !== 'load').map((stage) => pad(stage.slice(0, 7), 9)).join(''),
  );
  const upTo2mp = result.images.filter((image) => image.megapixels <= 2.0);
  const defaultOverFast = median(upTo2mp.map((image) => image.p50Ms / image.fastP50Ms));
  console.log(`p50 with the defaults (quality=auto) and with quality=fast (the default before issue 15), ×floor from fast; median auto/fast ≤ 2 MP ${defaultOverFast.toFixed(2)}×`);
  for (const image of result.images) {
    console.log(
      `${image.image.padEnd(14)}${pad(image.megapixels.toFixed(2), 6)}${pad(image.n, 4)}${pad(image.p50Ms.toFixed(0), 8)}${pad(image.p95Ms.toFixed(0), 8)}${pad(`${Math.round(image.zoomedShare * 100)}%`, 8)}${pad(image.fastP50Ms.toFixed(0), 8)}${pad(image.overhead.toFixed(2), 8)}${pad(image.nonInferP50Ms.toFixed(0), 9)}` +
        STAGES.filter((stage) => stage !== 'load').map((stage) => pad((image.stagesP50Ms[stage] ?? Number.NaN).toFixed(1), 9)).join(''),
    );
  }
  console.log(`response bytes (${FORMAT_IMAGE}):`);
  for (const format of result.formats) {
    console.log(`  ${format.query.padEnd(24)}${pad(format.bytes, 9)} B   encode ${format.encodeMs.toFixed(1)} ms, total ${format.totalMs.toFixed(0)} ms`);
  }
  const c = result.cold;
  console.log(
    `cold start (median of ${c.n}): spawn→health ${c.medianSpawnToHealthMs.toFixed(0)} ms, spawn→first removal ${c.medianSpawnToFirstRemovalMs.toFixed(0)} ms ` +
      `(load ${c.medianLoadMs.toFixed(0)} ms, first infer ${median(c.firstInferMs).toFixed(0)} ms)`,
  );
  const m = result.memory;
  console.log(
    `peak RSS: load+warmup ${m.loadPeakMiB.toFixed(0)} MiB (resident after ${m.residentAfterWarmupMiB.toFixed(0)}), ` +
      `12 MP one at a time ${m.sequential12mpPeakMiB.toFixed(0)} MiB, ${IN_FLIGHT} in flight ${m.inFlight12mpPeakMiB.toFixed(0)} MiB (${m.inFlightWallMs.toFixed(0)} ms for all)`,
  );
  for (const check of result.targets) console.log(`  ${check.pass ? 'PASS' : 'FAIL'}  ${check.target}: ${check.measured}`);
}

/** The default model first, then every other model whose weights come from npm and are present. */
function defaultModels(): string[] {
  const config = loadConfig({ ...process.env, MODEL: undefined });
  const npmModels = registry.models.filter((entry) => entry.sources.some((source) => source.kind === 'npm-tarball'));
  const names = [registry.default, ...npmModels.map((entry) => entry.name).filter((name) => name !== registry.default)];
  return names.filter((name) => checkWeights(findModel(name)!, config.modelsDir, 'size') === 'present');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      models: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'peer-dir': { type: 'string' },
      'cli-images': { type: 'string' },
      'cli-only': { type: 'boolean', default: false },
      // model, reuse, cli: the sections to run (all by default); --cli-only is --only cli.
      only: { type: 'string' },
    },
  });
  const sections = new Set(values['cli-only'] ? ['cli'] : (values.only ?? 'model,reuse,cli').split(',').map((name) => name.trim()));
  const models = values.models ? values.models.split(',').map((name) => name.trim()) : defaultModels();
  for (const name of models) if (!findModel(name)) throw new Error(`unknown model ${name}`);
  const iterations = values.quick ? QUICK : FULL;
  const cliImages = values['cli-images'] === undefined ? iterations.cliImages : Number(values['cli-images']);
  if (!Number.isInteger(cliImages) || cliImages < 1) throw new Error(`--cli-images takes a whole number of images, got ${values['cli-images']}`);
  const log = (line: string): void => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}`);
  const loadBefore = loadAverage();
  const started = Date.now();
  const images = await benchImages();
  log(`models ${models.join(', ')} from ${loadConfig({ ...process.env, MODEL: undefined }).modelsDir}; load average ${loadBefore.join(' ')}`);
  const results: ModelResult[] = [];
  let reuse: ReuseResult | null = null;
  if (sections.has('model')) {
    for (const model of models) {
      const result = await benchModel(model, images, iterations, log);
      printTable(result);
      results.push(result);
    }
  }
  if (sections.has('reuse')) {
    log(`${models[0]!}: preview model and mask cache…`);
    reuse = await measureReuse(models[0]!, images, iterations.large, values['peer-dir'], log);
    printReuse(reuse);
  }
  let cliThroughput: CliThroughputResult | null = null;
  if (sections.has('cli')) {
    log(`${models[0]!}: the CLI through --endpoint…`);
    cliThroughput = await measureCliThroughput(models[0]!, images, cliImages, log);
    printCliThroughput(cliThroughput);
  }
  const summary = {
    bench: 'detourage',
    date: new Date().toISOString(),
    quick: values.quick,
    node: process.version,
    cpus: os.availableParallelism(),
    modelsDir: loadConfig({ ...process.env, MODEL: undefined }).modelsDir,
    loadAverageBefore: loadBefore,
    loadAverageAfter: loadAverage(),
    durationS: round((Date.now() - started) / 1000),
    models: results,
    reuse,
    cliThroughput,
  };
  console.log(JSON.stringify(summary));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
