/**
 * `npm run bench`'s section for issue #14: what a frontend pays when it asks
 * for a preview, or asks again for the same photo with other options. Each
 * lever is measured against the same server without it, on the same images:
 *
 *   full        default options, preview model off, no mask cache
 *   preview     `size=preview` without the preview model, then with it (cache off, so every request infers)
 *   repeat      the same photo again with other options, without the cache (misses) and with it (hits)
 *   peer        the closest Node peer on the same images, against our defaults with the cache off
 *               (every photo a new one, as a real stream is), when --peer-dir is given
 */
import { loadConfig } from '../functions/config';
import { forkPeer } from './peer-process';
import { resolvePeer } from './peer-worker';
import type { BenchImage } from './images';
import { DEPLOYED_ENV, removal, type RemovalSample, type ServerProcess, spawnServer, waitForHealth, warmup } from './server-process';
import { median, pad, round } from './stats';

/** Options a user tries on a photo they already sent: none of them changes the mask. */
export const REPEAT_QUERIES = ['?bg_color=white', '?crop=true', '?format=webp', '?channels=alpha', '?bg_color=black&crop=true', '?format=jpeg'] as const;
const PEER_MAX_PIXELS = 2_000_000;
const MIB = 1024 * 1024;

export interface ReuseImage {
  image: string;
  megapixels: number;
  fullP50Ms: number;
  previewWithoutP50Ms: number;
  previewWithP50Ms: number;
  /** X-Model of the preview answers with the variant on. */
  previewModel: string;
  repeatMissP50Ms: number;
  repeatHitP50Ms: number;
  /** Repeats whose Server-Timing said `cache;desc=hit`, of those sent. */
  hits: string;
  defaultP50Ms: number;
  peerP50Ms: number | null;
}

export interface ReuseResult {
  images: ReuseImage[];
  /** Medians over images of the ratios the issue sets targets for. */
  previewRatio: number;
  previewRatioWithout: number;
  hitRatio: number;
  peerRatio: number | null;
  targets: { target: string; measured: string; pass: boolean }[];
}

async function p50(server: ServerProcess, image: BenchImage, queries: readonly string[], iterations: number): Promise<{ ms: number; samples: RemovalSample[] }> {
  const samples: RemovalSample[] = [];
  for (let index = 0; index < iterations; index += 1) samples.push(await removal(server, image, queries[index % queries.length]));
  return { ms: round(median(samples.map((sample) => sample.ms))), samples };
}

async function withServer<T>(env: Record<string, string>, work: (server: ServerProcess) => Promise<T>): Promise<T> {
  const server = await spawnServer({ ...DEPLOYED_ENV, ...env });
  try {
    await waitForHealth(server);
    await warmup(server);
    return await work(server);
  } finally {
    await server.stop();
  }
}

const ratio = (numerator: number, denominator: number): number => round(numerator / denominator, 3);

export async function measureReuse(
  model: string,
  images: readonly BenchImage[],
  iterations: number,
  peerDir: string | undefined,
  log: (line: string) => void,
): Promise<ReuseResult> {
  const rows = images.map((image) => ({ image, row: { image: image.name, megapixels: round((image.width * image.height) / 1e6, 2) } as ReuseImage }));
  const noCache = { MODEL: model, MASK_CACHE_MB: '0' };

  await withServer({ ...noCache, PREVIEW_MODEL: 'off' }, async (server) => {
    for (const { image, row } of rows) {
      log(`reuse: ${image.name} full, preview without the variant, repeats without the cache…`);
      // One untimed request per query set first, so that each set is timed warm.
      await removal(server, image);
      row.fullP50Ms = (await p50(server, image, [''], iterations)).ms;
      await removal(server, image, '?size=preview');
      row.previewWithoutP50Ms = (await p50(server, image, ['?size=preview'], iterations)).ms;
      row.repeatMissP50Ms = (await p50(server, image, REPEAT_QUERIES, iterations)).ms;
    }
  });

  await withServer({ ...noCache, PREVIEW_MODEL: 'auto' }, async (server) => {
    for (const { image, row } of rows) {
      log(`reuse: ${image.name} preview with the variant, defaults…`);
      await removal(server, image, '?size=preview');
      const preview = await p50(server, image, ['?size=preview'], iterations);
      row.previewWithP50Ms = preview.ms;
      row.previewModel = preview.samples[0]!.model;
      row.defaultP50Ms = (await p50(server, image, ['?format=png'], iterations)).ms;
    }
  });

  // spawnServer turns the cache off unless told; this server has the service's default.
  await withServer({ MODEL: model, MASK_CACHE_MB: String(loadConfig({}).maskCacheBytes / MIB) }, async (server) => {
    for (const { image, row } of rows) {
      log(`reuse: ${image.name} repeats with the cache…`);
      // The first sight of the photo fills the cache; every repeat after it should hit.
      await removal(server, image);
      const repeats = await p50(server, image, REPEAT_QUERIES, iterations);
      row.repeatHitP50Ms = repeats.ms;
      row.hits = `${repeats.samples.filter((sample) => /\bcache;desc="?hit/.test(sample.serverTiming)).length}/${repeats.samples.length}`;
    }
  });

  const peerInstall = peerDir === undefined ? null : resolvePeer(peerDir);
  if (peerDir !== undefined && peerInstall === null) log(`reuse: no peer under ${peerDir}; see npm run bench:peer for how to install it`);
  for (const { row } of rows) row.peerP50Ms = null;
  if (peerDir !== undefined && peerInstall !== null) {
    const peer = forkPeer(peerDir);
    try {
      for (const { image, row } of rows) {
        if (image.width * image.height > PEER_MAX_PIXELS) continue;
        log(`reuse: ${image.name} peer ×${iterations}…`);
        const samples = await peer.run({ kind: 'run', image: { name: image.name, bytes: image.bytes, contentType: image.contentType }, iterations });
        row.peerP50Ms = round(median(samples.samplesMs));
      }
      await peer.finish();
    } finally {
      peer.kill();
    }
  }

  const all = rows.map(({ row }) => row);
  const previewRatio = round(median(all.map((row) => ratio(row.previewWithP50Ms, row.fullP50Ms))), 3);
  const previewRatioWithout = round(median(all.map((row) => ratio(row.previewWithoutP50Ms, row.fullP50Ms))), 3);
  const hitRatio = round(median(all.map((row) => ratio(row.repeatHitP50Ms, row.repeatMissP50Ms))), 3);
  const compared = all.filter((row) => row.peerP50Ms !== null);
  const peerRatio = compared.length === 0 ? null : round(median(compared.map((row) => ratio(row.defaultP50Ms, row.peerP50Ms!))), 3);
  const everyHit = all.every((row) => row.hits.split('/')[0] === row.hits.split('/')[1]);
  return {
    images: all,
    previewRatio,
    previewRatioWithout,
    hitRatio,
    peerRatio,
    targets: [
      { target: 'size=preview p50 ≤ 0.35× full-size p50 (median over images)', measured: `${previewRatio.toFixed(2)}× (without the variant ${previewRatioWithout.toFixed(2)}×)`, pass: previewRatio <= 0.35 },
      { target: 'cache-hit p50 ≤ 0.15× the first request’s (median over images)', measured: `${hitRatio.toFixed(2)}×${everyHit ? '' : ', not every repeat hit'}`, pass: hitRatio <= 0.15 && everyHit },
      {
        target: 'p50 ≤ 0.45× the peer’s, images ≤ 2 MP, default settings (median)',
        measured: peerRatio === null ? 'not measured: give --peer-dir' : `${peerRatio.toFixed(2)}×`,
        pass: peerRatio !== null && peerRatio <= 0.45,
      },
    ],
  };
}

export function printReuse(result: ReuseResult): void {
  console.log('\n== preview model and mask cache (p50 ms) ==');
  console.log(`${'image'.padEnd(14)}${pad('MP', 6)}${pad('full', 7)}${pad('prev-', 7)}${pad('prev+', 7)}${pad('miss', 7)}${pad('hit', 7)}${pad('hits', 6)}${pad('default', 9)}${pad('peer', 7)}  preview model`);
  for (const row of result.images) {
    console.log(
      `${row.image.padEnd(14)}${pad(row.megapixels.toFixed(2), 6)}${pad(row.fullP50Ms.toFixed(0), 7)}${pad(row.previewWithoutP50Ms.toFixed(0), 7)}${pad(row.previewWithP50Ms.toFixed(0), 7)}` +
        `${pad(row.repeatMissP50Ms.toFixed(0), 7)}${pad(row.repeatHitP50Ms.toFixed(0), 7)}${pad(row.hits, 6)}${pad(row.defaultP50Ms.toFixed(0), 9)}${pad(row.peerP50Ms === null ? '-' : row.peerP50Ms.toFixed(0), 7)}  ${row.previewModel}`,
    );
  }
  for (const check of result.targets) console.log(`  ${check.pass ? 'PASS' : 'FAIL'}  ${check.target}: ${check.measured}`);
}
