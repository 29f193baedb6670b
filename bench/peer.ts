/**
 * `npm run bench:peer -- --peer-dir /tmp/peer [--iterations 5] [--large-iterations 5]`
 *
 * Issue #4's optional peer comparison: our server against
 * @imgly/background-removal-node (the closest Node peer, the same IS-Net
 * weights) on the same images in the same run. Ours is the local server in its
 * own process over loopback HTTP (bench/server-process.ts, the deploy's
 * environment), warmed with /warmup; the peer is bench/peer-worker.ts in its
 * own process with the same environment, calling `removeBackground` with its
 * defaults (model 'medium', PNG). The two alternate image by image, each with
 * one untimed call and then N timed ones, and each process's peak RSS (VmHWM)
 * is read after the last image. Prints a table, the ratios ours/peer with
 * PASS/FAIL against the targets, and last one JSON line.
 *
 * The peer is AGPL and never a dependency of this project: it is installed
 * outside the repository and loaded only from --peer-dir, in the child.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { loadConfig } from '../functions/config';
import { benchImages } from './images';
import { forkPeer } from './peer-process';
import { packageVersion, PEER_PACKAGE, resolvePeer, warmSamples, type WarmSamples } from './peer-worker';
import { DEPLOYED_ENV, removal, spawnServer, waitForHealth, warmup } from './server-process';
import { loadAverage, median, pad, peakRssMiB, round } from './stats';

const IMAGE_NAMES = ['anime-girl-1', 'car-1', 'photo-2mp', 'photo-12mp'] as const;
const LARGE_IMAGE_PIXELS = 4_000_000;
/** Targets from issue #4. */
const LATENCY_RATIO_TARGET = 0.5;
const PEER_INSTALL_VERSION = '1.4.5';

function installHint(peerDir: string | undefined): string {
  const sharp = packageVersion(require, 'sharp');
  const onnxruntime = packageVersion(require, 'onnxruntime-node');
  const problem = peerDir === undefined ? 'no --peer-dir given' : `${PEER_PACKAGE} is not installed under ${peerDir}`;
  return [
    `bench:peer: ${problem}.`,
    `The peer (${PEER_PACKAGE}, AGPL) is never a dependency of this project; install it outside the repository,`,
    `with overrides so that it runs on our sharp and onnxruntime-node (its own install script would download CUDA):`,
    '',
    '  mkdir -p /tmp/peer && cd /tmp/peer && npm init -y',
    `  npm pkg set overrides.sharp=${sharp} overrides.onnxruntime-node=${onnxruntime}`,
    `  ONNXRUNTIME_NODE_INSTALL=skip npm install ${PEER_PACKAGE}@${PEER_INSTALL_VERSION}`,
    '',
    'then: npm run bench:peer -- --peer-dir /tmp/peer',
  ].join('\n');
}

interface SideResult extends WarmSamples {
  p50Ms: number;
}

interface ImageComparison {
  image: string;
  megapixels: number;
  n: number;
  ours: SideResult;
  peer: SideResult;
  /** ours p50 / peer p50 */
  ratio: number;
}

interface TargetCheck {
  target: string;
  measured: string;
  pass: boolean;
}

function side(samples: WarmSamples): SideResult {
  return { ...samples, p50Ms: round(median(samples.samplesMs)) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'peer-dir': { type: 'string' },
      iterations: { type: 'string', default: '5' },
      'large-iterations': { type: 'string', default: '5' },
    },
  });
  const peerDir = values['peer-dir'];
  const install = peerDir === undefined ? null : resolvePeer(peerDir);
  if (peerDir === undefined || install === null) {
    console.error(installHint(peerDir));
    process.exit(2);
  }
  const iterations = Number(values.iterations);
  const largeIterations = Number(values['large-iterations']);
  const log = (line: string): void => console.error(`[bench:peer ${new Date().toISOString().slice(11, 19)}] ${line}`);
  const oursModel = loadConfig(process.env).model;
  const loadBefore = loadAverage();
  const started = Date.now();
  const all = await benchImages();
  const images = IMAGE_NAMES.map((name) => all.find((image) => image.name === name)!);
  log(`ours: ${oursModel}; peer ${PEER_PACKAGE}@${install.version} (sharp ${install.sharp}, onnxruntime-node ${install.onnxruntime}) from ${peerDir}; load average ${loadBefore.join(' ')}`);

  const server = await spawnServer({ ...DEPLOYED_ENV });
  const peer = forkPeer(peerDir);
  const comparisons: ImageComparison[] = [];
  let oursPeakMiB: number;
  let peerPeakMiB: number;
  let oursWarmupMs: number;
  try {
    await waitForHealth(server);
    oursWarmupMs = round((await warmup(server)).ms);
    for (const image of images) {
      const n = image.width * image.height > LARGE_IMAGE_PIXELS ? largeIterations : iterations;
      log(`${image.name}: ours ×${n}…`);
      const ours = side(await warmSamples(n, async () => (await removal(server, image, '?format=png')).bytes));
      log(`${image.name}: peer ×${n}…`);
      const theirs = side(await peer.run({ kind: 'run', image: { name: image.name, bytes: image.bytes, contentType: image.contentType }, iterations: n }));
      comparisons.push({
        image: image.name,
        megapixels: round((image.width * image.height) / 1e6, 2),
        n,
        ours,
        peer: theirs,
        ratio: round(ours.p50Ms / theirs.p50Ms, 3),
      });
    }
    oursPeakMiB = round(await peakRssMiB(server.pid));
    peerPeakMiB = await peer.finish();
  } finally {
    await server.stop();
    peer.kill();
  }

  const medianRatio = round(median(comparisons.map((row) => row.ratio)), 3);
  const rssRatio = round(oursPeakMiB / peerPeakMiB, 3);
  const targets: TargetCheck[] = [
    ...comparisons.map((row) => ({
      target: `warm p50 ≤ ${LATENCY_RATIO_TARGET}× peer, ${row.image}`,
      measured: `${row.ratio.toFixed(2)}× (${row.ours.p50Ms.toFixed(0)} vs ${row.peer.p50Ms.toFixed(0)} ms)`,
      pass: row.ratio <= LATENCY_RATIO_TARGET,
    })),
    { target: `warm p50 ≤ ${LATENCY_RATIO_TARGET}× peer, median over images`, measured: `${medianRatio.toFixed(2)}×`, pass: medianRatio <= LATENCY_RATIO_TARGET },
    {
      target: 'peak RSS below the peer’s',
      measured: `${oursPeakMiB.toFixed(0)} vs ${peerPeakMiB.toFixed(0)} MiB (${rssRatio.toFixed(2)}×)`,
      pass: oursPeakMiB < peerPeakMiB,
    },
  ];

  console.log(`\n== detourage (${oursModel}) vs ${PEER_PACKAGE}@${install.version} (model medium), PNG out ==`);
  console.log(`${'image'.padEnd(14)}${pad('MP', 6)}${pad('n', 4)}${pad('ours p50', 10)}${pad('peer p50', 10)}${pad('ours/peer', 11)}${pad('ours B', 10)}${pad('peer B', 10)}`);
  for (const row of comparisons) {
    console.log(
      `${row.image.padEnd(14)}${pad(row.megapixels.toFixed(2), 6)}${pad(row.n, 4)}${pad(row.ours.p50Ms.toFixed(0), 10)}${pad(row.peer.p50Ms.toFixed(0), 10)}` +
        `${pad(row.ratio.toFixed(2), 11)}${pad(row.ours.bytes, 10)}${pad(row.peer.bytes, 10)}`,
    );
  }
  console.log(`${'median'.padEnd(44)}${pad(medianRatio.toFixed(2), 11)}`);
  console.log(`peak RSS (VmHWM, whole run): ours ${oursPeakMiB.toFixed(0)} MiB, peer ${peerPeakMiB.toFixed(0)} MiB, ours/peer ${rssRatio.toFixed(2)}`);
  console.log(`first call: ours ${comparisons[0]!.ours.firstMs.toFixed(0)} ms after /warmup (${oursWarmupMs.toFixed(0)} ms), peer ${comparisons[0]!.peer.firstMs.toFixed(0)} ms including its model load`);
  for (const check of targets) console.log(`  ${check.pass ? 'PASS' : 'FAIL'}  ${check.target}: ${check.measured}`);

  const loadAfter = loadAverage();
  log(`load average ${loadAfter.join(' ')}`);
  console.log(
    JSON.stringify({
      bench: 'detourage-vs-peer',
      date: new Date().toISOString(),
      node: process.version,
      cpus: os.availableParallelism(),
      ours: { model: oursModel },
      peer: { package: PEER_PACKAGE, version: install.version, sharp: install.sharp, onnxruntime: install.onnxruntime, dir: peerDir, model: 'medium' },
      env: DEPLOYED_ENV,
      loadAverageBefore: loadBefore,
      loadAverageAfter: loadAfter,
      durationS: round((Date.now() - started) / 1000),
      oursWarmupMs,
      images: comparisons,
      medianRatio,
      peakRssMiB: { ours: oursPeakMiB, peer: peerPeakMiB, ratio: rssRatio },
      targets,
      pass: targets.every((check) => check.pass),
    }),
  );
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
