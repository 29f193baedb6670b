/**
 * The peer's side of `npm run bench:peer`: a child process, forked by
 * bench/peer.ts, that loads @imgly/background-removal-node from a directory
 * outside this repository and times its `removeBackground` on the images it
 * is sent over IPC. The package is AGPL: it is never a dependency of this
 * project, nothing of it is copied here, and only this process loads it.
 *
 *   node dist/bench/peer-worker.js --peer-dir /tmp/peer   (over IPC only)
 *
 * It deliberately imports nothing that loads sharp or onnxruntime-node from
 * this repository, so its memory is the peer's alone.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { peakRssMiB, round } from './stats';

export const PEER_PACKAGE = '@imgly/background-removal-node';

/** What a bench image is on the wire: the bytes and their type, nothing from sharp. */
export interface WireImage {
  name: string;
  bytes: Uint8Array;
  contentType: string;
}

export type PeerRequest = { kind: 'run'; image: WireImage; iterations: number } | { kind: 'finish' };

export interface WarmSamples {
  /** The first call for this image, left out of the samples (for the peer's first image it includes the model load). */
  firstMs: number;
  samplesMs: number[];
  bytes: number;
}

export type PeerReply =
  | ({ kind: 'samples'; image: string } & WarmSamples)
  | { kind: 'finished'; peakRssMiB: number }
  | { kind: 'error'; message: string };

/**
 * One call to warm the path for this image, then `iterations` timed calls.
 * `work` returns the output's byte length; the same loop measures both sides.
 */
export async function warmSamples(iterations: number, work: () => Promise<number>): Promise<WarmSamples> {
  let started = performance.now();
  const bytes = await work();
  const firstMs = round(performance.now() - started);
  const samplesMs: number[] = [];
  for (let index = 0; index < iterations; index += 1) {
    started = performance.now();
    await work();
    samplesMs.push(round(performance.now() - started));
  }
  return { firstMs, samplesMs, bytes };
}

/**
 * Where `requireFrom` finds package `name`, looked up along its node_modules
 * paths (not by resolving `name/package.json`, which `exports` maps may hide).
 */
function packageDir(requireFrom: NodeJS.Require, name: string): string | null {
  for (const modules of requireFrom.resolve.paths(name) ?? []) {
    if (existsSync(path.join(modules, name, 'package.json'))) return path.join(modules, name);
  }
  return null;
}

/** `name`'s version as `requireFrom` finds it, or null when it does not. */
export function packageVersion(requireFrom: NodeJS.Require, name: string): string | null {
  const dir = packageDir(requireFrom, name);
  if (dir === null) return null;
  return (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
}

export interface PeerInstall {
  entry: string;
  packageDir: string;
  version: string;
  /** The native libraries it runs on, as its own require resolves them (the overrides decide these). */
  sharp: string | null;
  onnxruntime: string | null;
}

/** The peer as installed under `peerDir`, or null when it is not installed there. */
export function resolvePeer(peerDir: string): PeerInstall | null {
  const requireFromDir = createRequire(path.join(path.resolve(peerDir), 'package.json'));
  const dir = packageDir(requireFromDir, PEER_PACKAGE);
  const version = packageVersion(requireFromDir, PEER_PACKAGE);
  if (dir === null || version === null) return null;
  const entry = requireFromDir.resolve(PEER_PACKAGE);
  const requireFromPeer = createRequire(entry);
  return {
    entry,
    packageDir: dir,
    version,
    sharp: packageVersion(requireFromPeer, 'sharp'),
    onnxruntime: packageVersion(requireFromPeer, 'onnxruntime-node'),
  };
}

/** The part of the peer's API used here; its own typings are not imported. */
interface PeerModule {
  removeBackground: (image: Blob, config: PeerConfig) => Promise<Blob>;
}

interface PeerConfig {
  publicPath: string;
  model: 'small' | 'medium';
  output: { format: 'image/png' };
}

function send(reply: PeerReply): void {
  process.send?.(reply);
}

function main(): void {
  const { values } = parseArgs({ options: { 'peer-dir': { type: 'string' } } });
  const peer = values['peer-dir'] === undefined ? null : resolvePeer(values['peer-dir']);
  if (!peer) throw new Error(`${PEER_PACKAGE} is not installed under --peer-dir ${values['peer-dir']}`);
  const { removeBackground } = createRequire(peer.entry)(peer.entry) as PeerModule;
  // Its defaults, with the model files read from the installed package rather than a relative node_modules.
  // 'medium' is the fp16 IS-Net that our isnet-fp16 is taken from, and that isnet-fp32 is rewritten from.
  const config: PeerConfig = {
    publicPath: `${pathToFileURL(path.join(peer.packageDir, 'dist')).href}/`,
    model: 'medium',
    output: { format: 'image/png' },
  };
  const removal = async (image: WireImage): Promise<number> => {
    // From the input bytes to the PNG bytes in hand.
    const blob = await removeBackground(new Blob([image.bytes], { type: image.contentType }), config);
    return (await blob.arrayBuffer()).byteLength;
  };
  process.on('message', (request: PeerRequest) => {
    if (request.kind === 'finish') {
      void peakRssMiB('self').then((peakMiB) => {
        send({ kind: 'finished', peakRssMiB: round(peakMiB) });
        process.disconnect();
      });
      return;
    }
    warmSamples(request.iterations, () => removal(request.image)).then(
      (samples) => send({ kind: 'samples', image: request.image.name, ...samples }),
      (error: unknown) => send({ kind: 'error', message: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    );
  });
}

if (require.main === module) {
  try {
    main();
  } catch (error: unknown) {
    send({ kind: 'error', message: error instanceof Error ? error.message : String(error) });
    console.error(error);
    process.exit(1);
  }
}
