import path from 'node:path';
import registryJson from '../../models/registry.json';

/** Weights published inside an npm tarball as chunk files listed in `dist/resources.json`. */
export interface NpmTarballSource {
  kind: 'npm-tarball';
  package: string;
  version: string;
  /** Subresource-integrity string of the whole tarball, as `npm view` prints it. */
  integrity: string;
  /** Key in the package's `dist/resources.json`, e.g. `/models/medium`. */
  resource: string;
}

export interface UrlSource {
  kind: 'url';
  url: string;
}

/** How a derived model's weights are made from its base's; see convertFp32.ts. */
export type ModelTransform = 'fp16-to-fp32';
export const MODEL_TRANSFORMS: readonly ModelTransform[] = ['fp16-to-fp32'];

/**
 * Weights computed at fetch time from another registry model's verified
 * weights, then checked against this entry's own checksum like a download.
 */
export interface DerivedSource {
  kind: 'derived';
  /** The base model; it must itself be downloadable, so derivations never chain or loop. */
  from: string;
  transform: ModelTransform;
}

export type ModelSource = NpmTarballSource | UrlSource | DerivedSource;

export interface Checksum {
  algorithm: 'sha256' | 'md5';
  hex: string;
}

/** How the raw output map becomes a [0,1] mask. */
export type MaskPostprocess = 'minmax' | 'sigmoid-minmax';

export type Rgb = readonly [number, number, number];

export interface ModelEntry {
  name: string;
  description: string;
  license: string;
  /** Tried in order until one yields a file with the right checksum. */
  sources: readonly ModelSource[];
  checksum: Checksum;
  /** Exact file size where it is published, else null. */
  bytes: number | null;
  /** The model takes a square RGB image of this side. */
  inputSize: number;
  mean: Rgb;
  std: Rgb;
  postprocess: MaskPostprocess;
  /** Input tensor name; null means the model's first input. */
  input: string | null;
  /** Output tensor name; null means the model's first output. */
  output: string | null;
  /**
   * Peak RSS of a process holding this model and running one inference
   * (VmHWM, measured by `npm run bench`), or absent where never measured.
   */
  peakMiB?: number;
}

export interface Registry {
  default: string;
  models: readonly ModelEntry[];
}

function fail(problem: string): never {
  throw new Error(`models/registry.json: ${problem}`);
}

function isRgb(value: unknown): value is Rgb {
  return Array.isArray(value) && value.length === 3 && value.every((n) => typeof n === 'number' && Number.isFinite(n));
}

function checkSource(name: string, source: Partial<ModelSource>): asserts source is ModelSource {
  const fields = source as Record<string, unknown>;
  const strings = (...keys: string[]): boolean => keys.every((key) => typeof fields[key] === 'string' && fields[key] !== '');
  const ok =
    source.kind === 'url'
      ? strings('url')
      : source.kind === 'npm-tarball'
        ? strings('package', 'version', 'integrity', 'resource')
        : source.kind === 'derived'
          ? strings('from') && MODEL_TRANSFORMS.includes(source.transform as ModelTransform)
          : false;
  if (!ok) fail(`${name}: bad source ${JSON.stringify(source)}`);
}

/** The JSON is data anyone may edit, so its shape is checked rather than cast. */
export function parseRegistry(json: unknown): Registry {
  const root = json as { default?: unknown; models?: unknown };
  if (typeof root.default !== 'string' || !Array.isArray(root.models)) fail('expected {default, models[]}');
  const names = new Set<string>();
  const derived: { name: string; from: string }[] = [];
  for (const raw of root.models as Partial<ModelEntry>[]) {
    const name = raw.name;
    if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(name)) fail(`bad model name ${String(name)}`);
    if (names.has(name)) fail(`duplicate model ${name}`);
    names.add(name);
    const digestLength = { sha256: 64, md5: 32 }[raw.checksum?.algorithm ?? 'sha256'];
    if (!raw.checksum || !new RegExp(`^[0-9a-f]{${digestLength}}$`).test(raw.checksum.hex)) fail(`${name}: bad checksum`);
    if (!Array.isArray(raw.sources) || raw.sources.length === 0) fail(`${name}: no sources`);
    for (const source of raw.sources as Partial<ModelSource>[]) {
      checkSource(name, source);
      if (source.kind === 'derived') derived.push({ name, from: source.from });
    }
    if (!isRgb(raw.mean) || !isRgb(raw.std) || raw.std.some((n) => n === 0)) fail(`${name}: bad mean/std`);
    if (!Number.isInteger(raw.inputSize) || (raw.inputSize ?? 0) < 1) fail(`${name}: bad inputSize`);
    if (raw.postprocess !== 'minmax' && raw.postprocess !== 'sigmoid-minmax') fail(`${name}: bad postprocess`);
    if (raw.peakMiB !== undefined && !(Number.isInteger(raw.peakMiB) && raw.peakMiB > 0)) fail(`${name}: bad peakMiB`);
  }
  if (!names.has(root.default)) fail(`default ${root.default} is not a model`);
  const derivedNames = new Set(derived.map((source) => source.name));
  for (const { name, from } of derived) {
    if (!names.has(from)) fail(`${name}: derived from ${from}, which is not a model`);
    if (derivedNames.has(from)) fail(`${name}: derived from ${from}, which is itself derived`);
  }
  return json as Registry;
}

export const registry: Registry = parseRegistry(registryJson);

/**
 * An unmeasured model's peak, guessed from its file: the runtime (~350 MiB
 * with node and libvips) plus four times its weights. isnet-fp32 measures
 * 999 MiB against 1022 by this rule.
 */
export function peakMemoryMiB(entry: ModelEntry): number {
  if (entry.peakMiB !== undefined) return entry.peakMiB;
  return entry.bytes === null ? 2048 : Math.ceil(350 + (4 * entry.bytes) / (1024 * 1024));
}

/**
 * What the models need before any request: the largest allowed model's peak,
 * plus, for every further model kept loaded or inference run at once, half
 * of it (isnet-fp32 settles at 523 MiB resident of its 999 MiB peak).
 */
export function modelsReserveMiB(allowed: readonly ModelEntry[], maxLoadedModels: number, maxConcurrentInferences: number): number {
  const largest = Math.max(0, ...allowed.map(peakMemoryMiB));
  const extraModels = Math.min(maxLoadedModels, allowed.length) - 1;
  return Math.ceil(largest + ((Math.max(0, extraModels) + maxConcurrentInferences - 1) * largest) / 2);
}

export function findModel(name: string): ModelEntry | undefined {
  return registry.models.find((entry) => entry.name === name);
}

export function modelNames(): string[] {
  return registry.models.map((entry) => entry.name);
}

/**
 * The weights file of a model. Only registry names reach this function, so a
 * request can never steer it to another path.
 */
export function modelFilePath(modelsDir: string, entry: ModelEntry): string {
  return path.join(modelsDir, `${entry.name}.onnx`);
}
