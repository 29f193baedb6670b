/**
 * `npm run bench`'s section for issue #16: the CLI driving the local server as
 * it drives a deployed fleet (`remove DIR --endpoint URL`), at --concurrency
 * 1, 2 and 4, in images per second over the wall time of each whole run, the
 * CLI's own start included. One server process with the deployed settings
 * (MAX_QUEUE 4, so four in flight fit: one inferring, three waiting), warmed
 * first, its mask cache off since the inputs repeat. One instance runs one
 * inference at a time, so what concurrency buys here is one image's upload,
 * decoding and encoding overlapping another's inference; a fleet adds the
 * instances on top.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../functions/paths';
import type { BenchImage } from './images';
import { DEPLOYED_ENV, spawnServer, waitForHealth, warmup } from './server-process';
import { pad, round } from './stats';

export const CLI_CONCURRENCIES = [1, 2, 4] as const;
/** Photos of the sizes a shop sends; the 12 MP one would measure the server's memory admission instead. */
const MAX_PIXELS = 2_000_000;

export interface CliThroughputRow {
  concurrency: number;
  seconds: number;
  imagesPerSecond: number;
  /** Images per second over those at concurrency 1. */
  speedup: number;
}

export interface CliThroughputResult {
  model: string;
  images: number;
  /** The bench images the inputs cycle through. */
  sources: string[];
  rows: CliThroughputRow[];
}

async function runCli(args: readonly string[]): Promise<void> {
  const child = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'detourage'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`detourage ${args.join(' ')} exited with ${code}: ${stderr}`);
}

export async function measureCliThroughput(model: string, images: readonly BenchImage[], count: number, log: (line: string) => void): Promise<CliThroughputResult> {
  const sources = images.filter((image) => image.width * image.height <= MAX_PIXELS);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'detourage-bench-cli-'));
  const server = await spawnServer({ ...DEPLOYED_ENV, MODEL: model });
  try {
    const inputs = path.join(dir, 'photos');
    await fs.mkdir(inputs);
    for (let index = 0; index < count; index += 1) {
      const image = sources[index % sources.length]!;
      const extension = image.contentType === 'image/jpeg' ? 'jpg' : image.contentType.replace('image/', '');
      await fs.writeFile(path.join(inputs, `${String(index).padStart(3, '0')}-${image.name}.${extension}`), image.bytes);
    }
    await waitForHealth(server);
    await warmup(server);
    const rows: CliThroughputRow[] = [];
    let baseline: number | undefined;
    for (const concurrency of CLI_CONCURRENCIES) {
      log(`cli: ${count} images through --endpoint at --concurrency ${concurrency}…`);
      const started = performance.now();
      const output = path.join(dir, `cutouts-${concurrency}`);
      await runCli(['remove', inputs, '-o', output, '--endpoint', `${server.url}/remove-background`, '--concurrency', String(concurrency), '--quiet']);
      const seconds = (performance.now() - started) / 1000;
      const written = (await fs.readdir(output)).length;
      if (written !== count) throw new Error(`--concurrency ${concurrency} wrote ${written} of ${count} outputs`);
      const imagesPerSecond = count / seconds;
      baseline ??= imagesPerSecond;
      rows.push({ concurrency, seconds: round(seconds, 2), imagesPerSecond: round(imagesPerSecond, 3), speedup: round(imagesPerSecond / baseline, 2) });
    }
    return { model, images: count, sources: sources.map((image) => image.name), rows };
  } finally {
    await server.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

export function printCliThroughput(result: CliThroughputResult): void {
  console.log(`\n== CLI --endpoint against the local server (${result.model}, ${result.images} images from ${result.sources.join(', ')}) ==`);
  console.log(`${'concurrency'.padEnd(12)}${pad('seconds', 8)}${pad('img/s', 8)}${pad('×c=1', 7)}`);
  for (const row of result.rows) {
    console.log(`${String(row.concurrency).padEnd(12)}${pad(row.seconds.toFixed(1), 8)}${pad(row.imagesPerSecond.toFixed(2), 8)}${pad(row.speedup.toFixed(2), 7)}`);
  }
}
