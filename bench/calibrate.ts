/**
 * `npm run bench:memory`: the memory estimate (functions/pipeline/cost.ts)
 * against measured peaks.
 *
 * What a request must reserve is its own buffers at their peak, whichever
 * stage that is in: the model's inference transient is reserved once for the
 * instance (registry peakMiB), and another request may be inferring while
 * this one encodes. Measured plainly, a request's own buffers hide under the
 * transient, which onnxruntime frees after each run. So each shape runs in a
 * fresh server process with onnxruntime's CPU arena on (INFER_CPU_ARENA=1):
 * the arena keeps the transient resident after a first inference, a tiny
 * removal, so the next request's rise over the resident set is its own
 * buffers (plus whatever the arena still had to grow). Prints each shape's
 * estimate (before and after CALIBRATION), that rise and their ratio, and
 * whether every estimate covers its rise.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../functions/config';
import { findModel, registry } from '../functions/model/registry';
import { CALIBRATION } from '../functions/pipeline/cost';
import { planRemoval } from '../functions/pipeline/removal';
import { parseRemovalOptions } from '../functions/request/options';
import { bodyBytes, postImage } from '../tools/lib/http';
import { photoLikeJpeg } from './images';
import { DEPLOYED_ENV, spawnServer, waitForHealth, warmup } from './server-process';
import { MIB, peakRssMiB, resetPeakRss, round, rssMiB } from './stats';

interface Shape {
  name: string;
  megapixels: number;
  query: Record<string, string>;
  background?: boolean;
  json?: boolean;
}

const SHAPES: readonly Shape[] = [
  { name: '12 MP png', megapixels: 12, query: {} },
  { name: '12 MP webp', megapixels: 12, query: { format: 'webp' } },
  { name: '12 MP bg_color jpg', megapixels: 12, query: { bg_color: 'white' } },
  { name: '12 MP zip', megapixels: 12, query: { format: 'zip' } },
  { name: '12 MP alpha', megapixels: 12, query: { channels: 'alpha' } },
  { name: '12 MP crop 50%', megapixels: 12, query: { crop: 'true', crop_margin: '50%' } },
  { name: '12 MP scale 50%', megapixels: 12, query: { scale: '50%' } },
  { name: '12 MP bg_image', megapixels: 12, query: {}, background: true },
  { name: '12 MP refine', megapixels: 12, query: { refine: 'true' } },
  { name: '12 MP quality=high', megapixels: 12, query: { quality: 'high' } },
  { name: '12 MP shadow', megapixels: 12, query: { shadow_type: 'drop' } },
  { name: '12 MP crop shadow', megapixels: 12, query: { crop: 'true', shadow_type: 'drop' } },
  { name: '12 MP semitransparency=false', megapixels: 12, query: { semitransparency: 'false' } },
  { name: '12 MP json', megapixels: 12, query: {}, json: true },
  { name: '40 MP size=hd', megapixels: 40, query: { size: 'hd' } },
  { name: '40 MP png', megapixels: 40, query: {} },
  { name: '40 MP webp', megapixels: 40, query: { format: 'webp' } },
];

function dimensions(megapixels: number): { width: number; height: number } {
  const width = Math.round(Math.sqrt((megapixels * 1e6 * 4) / 3));
  return { width, height: Math.floor((megapixels * 1e6) / width) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { only: { type: 'string' } } });
  const shapes = values.only ? SHAPES.filter((shape) => values.only!.split(',').some((part) => shape.name.includes(part))) : SHAPES;
  const config = loadConfig({});
  const entry = findModel(registry.default)!;
  console.log(`model: ${entry.name}; each shape in a fresh server process with MALLOC_ARENA_MAX=2`);
  const tiny = await photoLikeJpeg(64, 64, 7);
  const images = new Map<number, Buffer>();
  for (const megapixels of new Set(shapes.map((shape) => shape.megapixels))) {
    const { width, height } = dimensions(megapixels);
    images.set(megapixels, await photoLikeJpeg(width, height, megapixels));
  }

  const rows: { name: string; estimateMiB: number; rawMiB: number; riseMiB: number; ratio: number }[] = [];
  for (const shape of shapes) {
    const image = images.get(shape.megapixels)!;
    const options = parseRemovalOptions(shape.query);
    const backgroundImage = shape.background ? image : null;
    const plan = await planRemoval({ image, backgroundImage, options }, entry, config, shape.json === true);
    // A fresh process per shape: VmHWM never falls, and memory an earlier shape left with the allocator would hide this one's.
    const server = await spawnServer({ ...DEPLOYED_ENV, LOG_LEVEL: 'error', MEMORY_LIMIT_MB: String(64 * 1024), INFER_CPU_ARENA: '1' });
    try {
      await waitForHealth(server);
      await warmup(server);
      // The warmup's synthetic image is 64 px; one real (tiny) removal sizes the arena as every removal will.
      await bodyBytes(await postImage(`${server.url}/remove-background`, tiny));
      const form = new FormData();
      form.append('image_file', new Blob([image]), 'image.jpg');
      if (backgroundImage) form.append('bg_image_file', new Blob([backgroundImage]), 'background.jpg');
      const before = await rssMiB(server.pid);
      await resetPeakRss(server.pid);
      const response = await fetch(`${server.url}/remove-background?${new URLSearchParams(shape.query).toString()}`, {
        method: 'POST',
        body: form,
        headers: shape.json ? { accept: 'application/json' } : {},
      });
      const body = await bodyBytes(response);
      if (response.status !== 200) throw new Error(`${shape.name}: HTTP ${response.status} ${body.toString().slice(0, 300)}`);
      const riseMiB = (await peakRssMiB(server.pid)) - before;
      const estimateMiB = plan.cost.bytes / MIB;
      const rawMiB = estimateMiB / CALIBRATION;
      rows.push({ name: shape.name, estimateMiB, rawMiB, riseMiB, ratio: riseMiB / rawMiB });
      console.log(`${shape.name}: resident ${round(before)} MiB with the arena, request peak +${round(riseMiB)} MiB, estimate ${round(estimateMiB)} MiB`);
    } finally {
      await server.stop();
    }
  }

  console.log('shape                    estimate MiB   uncalibrated   measured rise   rise/uncalibrated');
  for (const row of rows) {
    const cells = [row.estimateMiB, row.rawMiB, row.riseMiB].map((value) => String(round(value)));
    console.log(`${row.name.padEnd(24)} ${cells[0]!.padStart(12)} ${cells[1]!.padStart(14)} ${cells[2]!.padStart(15)} ${String(round(row.ratio, 2)).padStart(19)}`);
  }
  const needed = Math.max(...rows.map((row) => row.ratio));
  const covered = rows.every((row) => row.estimateMiB >= row.riseMiB);
  console.log(`CALIBRATION is ${CALIBRATION}; the largest rise/uncalibrated ratio is ${round(needed, 2)}: ${covered ? 'PASS every estimate covers its measured rise' : 'FAIL some estimate is below its measured rise'}`);
  console.log(JSON.stringify({ calibrate: { calibration: CALIBRATION, needed: round(needed, 3), covered, rows } }));
  if (!covered) process.exitCode = 1;
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
