/**
 * The storage function's per-object overhead (issue 16): N objects, one at a
 * time, through removeBackgroundFromStorage behind the functions framework's
 * own server, with @google-cloud/storage against the local JSON API stand-in
 * (tools/lib/fakeStorage.ts). For each object, the event's time as Eventarc
 * would see it (POST to answer) less the pipeline's own stages (the event's
 * log line, the same figures as Server-Timing), split into the storage calls
 * and the rest (the framework, event parsing, options, the precondition).
 *
 *   npm run bench:storage -- [--images N]      (node dist/bench/storageOverhead.js)
 *
 * The storage calls here go over loopback to a server in this process:
 * Cloud Storage in the function's region adds its own latency per call
 * (a metadata lookup, a read, a write), which this figure leaves out. The
 * mask cache is off, so every object runs an inference. One untimed object
 * loads the model first.
 */
import { createServices } from '../functions/app';
import { loadConfig } from '../functions/config';
import { Logger } from '../functions/log';
import { finalizedEvent, postEvent, startStorageFunction } from '../tools/lib/cloudEvents';
import { startFakeStorage } from '../tools/lib/fakeStorage';
import { fixture } from '../tools/lib/images';
import { loadAverage, median, pad, percentile, round } from './stats';

const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(name);
  return index === -1 ? undefined : process.argv[index + 1];
};
const IMAGES = Number(argument('--images') ?? 40);
const FIXTURES = ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'] as const;
const INPUT = 'bench-photos';
const OUTPUT = 'bench-cutouts';

interface EventLine {
  message: string;
  outcome: string;
  totalMs: number;
  storageMs: Record<string, number>;
  timingsMs?: Record<string, number>;
}

interface Sample {
  /** POST to answer, as the caller (Eventarc) sees it. */
  eventMs: number;
  /** The removal's own stages, decode to encode. */
  pipelineMs: number;
  /** The metadata lookup, the read and the write. */
  storageMs: number;
}

function sum(values: Record<string, number> | undefined): number {
  return Object.values(values ?? {}).reduce((total, value) => total + value, 0);
}

async function main(): Promise<void> {
  if (!Number.isInteger(IMAGES) || IMAGES < 1) throw new Error('--images takes a whole number of objects, at least 1');
  const storage = await startFakeStorage();
  const lines: EventLine[] = [];
  const logger = new Logger({
    level: 'info',
    pretty: false,
    write: (line) => {
      const parsed = JSON.parse(line) as EventLine;
      if (parsed.message.startsWith('removeBackgroundFromStorage ')) lines.push(parsed);
    },
  });
  const config = loadConfig({ ...process.env, INPUT_BUCKET: INPUT, OUTPUT_BUCKET: OUTPUT, STORAGE_RETRIES: '0', MASK_CACHE_MB: '0', DETOURAGE_TEST_STORAGE_ENDPOINT: storage.url });
  const services = createServices(config, undefined, logger);
  const server = await startStorageFunction(services);
  const send = async (name: string, bytes: Buffer): Promise<{ ms: number; line: EventLine }> => {
    const object = storage.put(INPUT, name, bytes, { contentType: 'image/jpeg' });
    const started = performance.now();
    const response = await postEvent(server.url, finalizedEvent(object, { time: new Date().toISOString() }));
    const ms = performance.now() - started;
    const line = lines.at(-1);
    if (response.status !== 204 || line?.outcome !== 'written') throw new Error(`${name}: answered ${response.status}, ${line?.outcome ?? 'no log line'}`);
    return { ms, line };
  };
  try {
    console.log(`storage function overhead: ${IMAGES} objects, one at a time, model ${config.model}, load ${loadAverage().join(' ')}`);
    await send('warmup/first.jpg', fixture('car-1.jpg'));
    const samples: Sample[] = [];
    for (let index = 0; index < IMAGES; index += 1) {
      const name = FIXTURES[index % FIXTURES.length]!;
      const { ms, line } = await send(`photos/${index}-${name}`, fixture(name));
      samples.push({ eventMs: ms, pipelineMs: sum(line.timingsMs), storageMs: sum(line.storageMs) });
    }
    const rows: [string, number[]][] = [
      ['event (POST to answer)', samples.map((sample) => sample.eventMs)],
      ['pipeline (decode..encode)', samples.map((sample) => sample.pipelineMs)],
      ['overhead (event - pipeline)', samples.map((sample) => sample.eventMs - sample.pipelineMs)],
      ['  storage calls (loopback)', samples.map((sample) => sample.storageMs)],
      ['  the rest', samples.map((sample) => sample.eventMs - sample.pipelineMs - sample.storageMs)],
    ];
    console.log(`${'ms per object'.padEnd(30)}${pad('p50', 9)}${pad('p90', 9)}${pad('mean', 9)}`);
    for (const [label, values] of rows) {
      const mean = values.reduce((total, value) => total + value, 0) / values.length;
      console.log(`${label.padEnd(30)}${pad(round(median(values)), 9)}${pad(round(percentile(values, 0.9)), 9)}${pad(round(mean), 9)}`);
    }
    const meanEvent = samples.reduce((total, sample) => total + sample.eventMs, 0) / samples.length;
    // One event at a time per instance: an instance is busy for the whole event.
    console.log(`instance-seconds per 1,000 images, one event at a time: ${round(meanEvent, 0)} (Cloud Storage's latency not included)`);
  } finally {
    await server.close();
    await storage.close();
    await Promise.all(config.allowedModels.filter((name) => services.holder.isModelLoaded(name)).map(async (name) => (await services.holder.get(name)).release()));
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
