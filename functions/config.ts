import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LOG_LEVELS, type LogLevel } from './log';
import { findModel, type ModelEntry, modelNames, modelsReserveMiB, registry } from './model/registry';
import { PREVIEW_MODEL_SETTINGS, type PreviewModelSetting, previewCompanions } from './model/selection';
import { DEFAULT_MODELS_DIR } from './paths';

export interface Config {
  /** Registry name of the model that serves requests that name none. */
  model: string;
  /** Registry names a request may ask for; always includes `model`. */
  allowedModels: readonly string[];
  /** PREVIEW_MODEL: whether small results run the requested model's preview variant (model/selection.ts). */
  previewModel: PreviewModelSetting;
  /** Models kept loaded at once; the least recently used is unloaded past this. */
  maxLoadedModels: number;
  modelsDir: string;
  maxUploadBytes: number;
  maxInputPixels: number;
  /** The largest output canvas (crop_margin, scale and position can make it larger than the image). */
  maxOutputPixels: number;
  /** The instance's memory, and where that figure came from. */
  memoryLimitMiB: number;
  memoryLimitSource: MemoryLimitSource;
  /**
   * Bytes the removals in flight may reserve together: the memory, less a
   * fifth kept as margin, less what the models need loaded and inferring.
   */
  requestMemoryBytes: number;
  /**
   * MASK_CACHE_MB in bytes: the bound of the cache of model-resolution masks
   * (pipeline/maskCache.ts), taken out of `requestMemoryBytes`; 0 turns it off.
   */
  maskCacheBytes: number;
  /** Intra-op threads for onnxruntime. */
  inferThreads: number;
  /**
   * onnxruntime's CPU memory arena (INFER_CPU_ARENA, default on): with
   * onnxruntime-node 1.30 inference is about 3× faster with it, for 175-225
   * MiB more peak memory, which the models' reserve counts.
   */
  cpuArena: boolean;
  /** 0 picks a free port. */
  port: number;
  /** Inferences run side by side; each IS-Net inference needs about 1 GB. */
  maxConcurrentInferences: number;
  /** Requests allowed to wait for memory or an inference; beyond that, 503 at once. */
  maxQueue: number;
  /** image_url and bg_image_url fetches in flight; beyond that, a URL request gets 503 at once. */
  maxConcurrentFetches: number;
  /** Past this a request is answered 504 and its pipeline stops at the next stage. */
  requestTimeoutMs: number;
  /** One budget per image_url or bg_image_url fetch, redirects included. */
  urlFetchTimeoutMs: number;
  /**
   * Test-only: image URLs may point at 127.0.0.1, so tests can serve them
   * locally. Refused on Cloud Run, where a loopback URL would reach the
   * instance's own ports.
   */
  allowLoopbackUrlsForTests: boolean;
  /** Caller checks (AUTH); a request passes if any of them passes. */
  auth: readonly AuthMode[];
  /** SHA-256 hashes of the accepted API keys (API_KEY_HASHES); the keys themselves are never configured. */
  apiKeys: readonly ApiKeyHash[];
  /** The Firebase project whose ID tokens (firebase) and App Check tokens (app-check) are accepted. */
  firebaseProjectId: string | undefined;
  /** Service accounts whose Google-signed OIDC token may warm up a public function (Cloud Scheduler's). */
  warmupServiceAccounts: readonly string[];
  /** Test-only: the origin of a local server that stands in for Google's key endpoints. */
  keyServerForTests: string | undefined;
  /** Requests per minute per caller (API key id, Firebase user, App Check app), in each instance (RATE_LIMIT_PER_MINUTE); undefined: no limit. */
  rateLimitPerMinute: number | undefined;
  /** Origins whose pages may call the functions (CORS_ORIGINS); empty sends no CORS headers at all. */
  corsOrigins: readonly string[];
  logLevel: LogLevel;
  /** Makes log lines carry Cloud Trace ids; Cloud Run sets it. */
  project: string | undefined;
  /** The settings of removeBackgroundFromStorage; undefined where none is given, as the HTTP functions run. */
  storage: StorageSettings | undefined;
}

/** The CloudEvent function's name: its settings are required where it is the target the instance serves. */
export const STORAGE_FUNCTION = 'removeBackgroundFromStorage';

/**
 * removeBackgroundFromStorage's settings. Names are compared as GCS compares
 * them, byte for byte: a prefix is a plain string prefix, so `out` also covers
 * `outdoor.jpg`; end a prefix with `/` to mean a folder.
 */
export interface StorageSettings {
  /** INPUT_BUCKET: the bucket the trigger watches (the deploy's bucket filter); events of another bucket are skipped. */
  inputBucket: string;
  /** INPUT_PREFIX: only objects whose names start with it are processed; empty for the whole bucket. */
  inputPrefix: string;
  outputBucket: string;
  /** OUTPUT_PREFIX: put before each input's name to make its output's. */
  outputPrefix: string;
  /**
   * STORAGE_OPTIONS as given: the HTTP API's parameters as a query string. Its
   * values are checked by the API's own parser, which sits above this module,
   * when the services are created (app.ts), so that a bad one still stops start-up.
   */
  options: string;
  /** MAX_EVENT_AGE: past it an event is refused (the error sidecar is written) rather than retried. */
  maxEventAgeMs: number;
  /** STORAGE_RETRIES: the client library's own retries of one call; past them the event fails and Eventarc redelivers it. */
  retries: number;
  /** Test-only: http://127.0.0.1:PORT of a local stand-in for the Cloud Storage JSON API. */
  endpointForTests: string | undefined;
}

/**
 * `iam`: Cloud Run's IAM has already let the request in, so the app checks
 * nothing (the default, as before AUTH existed). `api-key`: an X-Api-Key header
 * whose SHA-256 is in API_KEY_HASHES. `firebase`: a Firebase Authentication ID
 * token in Authorization: Bearer. `app-check`: a Firebase App Check token in
 * X-Firebase-AppCheck. The last two are for FIREBASE_PROJECT_ID.
 */
export type AuthMode = 'iam' | 'api-key' | 'firebase' | 'app-check';
const AUTH_MODES: readonly AuthMode[] = ['iam', 'api-key', 'firebase', 'app-check'];
/** The modes that name their caller, so that a rate limit can count per caller. */
const IDENTIFYING_MODES: readonly AuthMode[] = ['api-key', 'firebase', 'app-check'];

export interface ApiKeyHash {
  /** Names the key in logs and in API_KEY_HASHES; never the key itself. */
  id: string;
  /** Lower-case hex SHA-256 of the whole key, prefix included. */
  sha256: string;
}

export const API_KEY_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export class ConfigError extends Error {
  constructor(problems: string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Readonly<Record<string, string | undefined>>;

export type MemoryLimitSource = 'MEMORY_LIMIT_MB' | 'cgroup v2' | 'cgroup v1' | 'machine';

/** Reads a file's text, or undefined when it is not there; injected by tests. */
export type ReadText = (file: string) => string | undefined;

const readTextFile: ReadText = (file) => {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};

/** The cgroup's files, v2 first; "max" (v2) or a near-2^63 figure (v1) mean no limit. */
const CGROUP_LIMITS: readonly [Exclude<MemoryLimitSource, 'MEMORY_LIMIT_MB' | 'machine'>, string][] = [
  ['cgroup v2', '/sys/fs/cgroup/memory.max'],
  ['cgroup v1', '/sys/fs/cgroup/memory/memory.limit_in_bytes'],
];

/** Part of the memory kept out of the request budget: V8's heap, bodies being received or fetched, libvips' caches. */
export const MEMORY_MARGIN = 0.2;
/**
 * A 1024² model's mask is 1 MiB, so 32 masks: the photos a few callers at a
 * time are trying options on. On 2 GiB it takes the request budget from 468 to
 * 436 MiB, which still holds a 24 MP PNG (349 MiB).
 */
const DEFAULT_MASK_CACHE_MIB = 32;
/** Below this the budget could not hold even a small removal: the configuration is refused at start. */
const MIN_REQUEST_MEMORY_MIB = 64;

const MIB = 1024 * 1024;
/** Cloud Functions refuses requests over 32 MB, so a larger cap would never be reached. */
const PLATFORM_REQUEST_LIMIT = 32 * 1000 * 1000;

function integerSetting(
  env: Env,
  name: string,
  fallback: number,
  problems: string[],
  max = Number.MAX_SAFE_INTEGER,
  min = 1,
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) {
    problems.push(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
    return fallback;
  }
  const value = Number(raw.trim());
  if (value < min || value > max) {
    problems.push(`${name} must be between ${min} and ${max}, got ${value}`);
    return fallback;
  }
  return value;
}

const TRUE_WORDS: ReadonlySet<string> = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS: ReadonlySet<string> = new Set(['false', '0', 'no', 'off']);

/** The one boolean vocabulary, for settings and request parameters alike: true/false, 1/0, yes/no, on/off. */
export function parseBoolean(text: string): boolean | undefined {
  const word = text.trim().toLowerCase();
  if (TRUE_WORDS.has(word)) return true;
  if (FALSE_WORDS.has(word)) return false;
  return undefined;
}

function booleanSetting(env: Env, name: string, fallback: boolean, problems: string[]): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const value = parseBoolean(raw);
  if (value === undefined) problems.push(`${name} must be true or false (or 1/0, yes/no, on/off), got ${JSON.stringify(raw)}`);
  return value ?? fallback;
}

/**
 * MEMORY_LIMIT_MB (what scripts/deploy.sh passes to match --memory), else the
 * cgroup's limit, else the machine's memory. Cloud Run may not expose the
 * cgroup files, so the deploy always passes the setting.
 */
function memoryLimit(env: Env, problems: string[], readText: ReadText): { mib: number; source: MemoryLimitSource } {
  const machineMiB = Math.floor(os.totalmem() / MIB);
  if (env.MEMORY_LIMIT_MB?.trim()) return { mib: integerSetting(env, 'MEMORY_LIMIT_MB', machineMiB, problems, 1024 * 1024, 128), source: 'MEMORY_LIMIT_MB' };
  for (const [source, file] of CGROUP_LIMITS) {
    const text = readText(file)?.trim();
    if (!text || !/^\d+$/.test(text)) continue;
    const mib = Math.floor(Number(text) / MIB);
    if (mib > 0 && mib < machineMiB) return { mib, source };
  }
  return { mib: machineMiB, source: 'machine' };
}

function authModes(env: Env, problems: string[]): AuthMode[] {
  const names = [...new Set((env.AUTH?.trim() || 'iam').split(',').map((name) => name.trim().toLowerCase()))];
  const modes: AuthMode[] = [];
  for (const name of names) {
    if ((AUTH_MODES as readonly string[]).includes(name)) modes.push(name as AuthMode);
    else problems.push(`AUTH must be a comma-separated list of ${AUTH_MODES.join(', ')}, got ${JSON.stringify(name)}`);
  }
  return modes;
}

/** `id:hexhash,id:hexhash`: two entries side by side are how a key is rotated. */
function apiKeyHashes(env: Env, auth: readonly AuthMode[], problems: string[]): ApiKeyHash[] {
  const entries = (env.API_KEY_HASHES ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  const keys: ApiKeyHash[] = [];
  for (const entry of entries) {
    const [id = '', sha256 = '', ...rest] = entry.split(':');
    // The entry itself stays out of the message: it is a hash, but it is the secret's contents.
    if (rest.length > 0 || !API_KEY_ID_PATTERN.test(id) || !/^[0-9a-fA-F]{64}$/.test(sha256)) {
      problems.push(`API_KEY_HASHES entry ${keys.length + 1} must be ID:SHA256 (an id of letters, digits, _ . -, and 64 hex digits), as "detourage keys create" prints`);
    } else if (keys.some((key) => key.id === id)) {
      problems.push(`API_KEY_HASHES names key id ${id} twice`);
    } else {
      keys.push({ id, sha256: sha256.toLowerCase() });
    }
  }
  if (auth.includes('api-key') && entries.length === 0) problems.push('AUTH includes api-key but API_KEY_HASHES is empty: no key could ever pass');
  // Hashes without the check would look protected and be open.
  if (!auth.includes('api-key') && entries.length > 0) problems.push('API_KEY_HASHES is set but AUTH does not include api-key, so no key would be checked');
  return keys;
}

/** Counted per caller, so it means nothing without a mode that names one: refused then rather than silently ignored. */
function rateLimit(env: Env, auth: readonly AuthMode[], problems: string[]): number | undefined {
  if (!env.RATE_LIMIT_PER_MINUTE?.trim()) return undefined;
  if (!auth.some((mode) => IDENTIFYING_MODES.includes(mode))) {
    problems.push(`RATE_LIMIT_PER_MINUTE counts requests per caller, so it needs AUTH to include one of ${IDENTIFYING_MODES.join(', ')}`);
  }
  return integerSetting(env, 'RATE_LIMIT_PER_MINUTE', 1, problems, 1_000_000);
}

/**
 * Exact origins only. `*` is refused: it would let any page on the web call
 * the service with whatever credential it can get hold of, and a list of the
 * real frontends is always known.
 */
function corsOrigins(env: Env, problems: string[]): string[] {
  const entries = (env.CORS_ORIGINS ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
  const origins: string[] = [];
  for (const entry of entries) {
    if (entry === '*') {
      problems.push('CORS_ORIGINS may not be *: list the exact origins of the pages that call the service');
      continue;
    }
    let origin: string | undefined;
    try {
      const url = new URL(entry);
      if (url.protocol === 'http:' || url.protocol === 'https:') origin = url.origin;
    } catch {
      origin = undefined;
    }
    // What a browser sends in Origin: scheme, host and a non-default port; no path, no trailing slash.
    if (origin !== entry) problems.push(`CORS_ORIGINS entry ${JSON.stringify(entry)} must be an origin such as https://app.example.com or http://localhost:5173`);
    else if (!origins.includes(origin)) origins.push(origin);
  }
  return origins;
}

/** Google Cloud's rule for project ids, which Firebase projects share. */
const PROJECT_ID_PATTERN = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;

function firebaseProjectId(env: Env, auth: readonly AuthMode[], problems: string[]): string | undefined {
  const projectId = env.FIREBASE_PROJECT_ID?.trim() || undefined;
  const needed = auth.filter((mode) => mode === 'firebase' || mode === 'app-check');
  if (needed.length > 0 && projectId === undefined) {
    problems.push(`AUTH includes ${needed.join(' and ')}, which needs FIREBASE_PROJECT_ID: the project whose tokens are accepted`);
  }
  if (projectId !== undefined && needed.length === 0) problems.push('FIREBASE_PROJECT_ID is set but AUTH includes neither firebase nor app-check, so no token would be checked');
  if (projectId !== undefined && !PROJECT_ID_PATTERN.test(projectId)) {
    problems.push(`FIREBASE_PROJECT_ID must be a project id (6-30 lower-case letters, digits and hyphens), got ${JSON.stringify(projectId)}`);
  }
  return projectId;
}

/**
 * With iam in AUTH every request is let in already, so an account list would
 * never be checked: refused, like hashes without api-key.
 */
function warmupServiceAccounts(env: Env, auth: readonly AuthMode[], problems: string[]): string[] {
  const accounts = [...new Set((env.WARMUP_SERVICE_ACCOUNTS ?? '').split(',').map((entry) => entry.trim().toLowerCase()).filter((entry) => entry !== ''))];
  for (const account of accounts) {
    if (!/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(account)) problems.push(`WARMUP_SERVICE_ACCOUNTS entry ${JSON.stringify(account)} must be a service account's email`);
  }
  if (accounts.length > 0 && auth.includes('iam')) {
    problems.push('WARMUP_SERVICE_ACCOUNTS is for public functions: with iam in AUTH, Cloud Run already checks the scheduler\'s token and the list would never be used');
  }
  return accounts;
}

/** Test-only settings, each refused on Cloud Run, which always sets K_SERVICE. */
function testSetting(env: Env, name: string, problems: string[]): string | undefined {
  const raw = env[name]?.trim();
  if (!raw || raw === '0') return undefined;
  if (env.K_SERVICE) problems.push(`${name} is for tests only and is refused on Cloud Run`);
  return raw;
}

const LOOPBACK_SETTING = 'DETOURAGE_TEST_ALLOW_LOOPBACK_URLS';
const KEY_SERVER_SETTING = 'DETOURAGE_TEST_KEY_SERVER';
const STORAGE_ENDPOINT_SETTING = 'DETOURAGE_TEST_STORAGE_ENDPOINT';

function loopbackForTests(env: Env, problems: string[]): boolean {
  const raw = testSetting(env, LOOPBACK_SETTING, problems);
  if (raw !== undefined && raw !== '1') problems.push(`${LOOPBACK_SETTING} must be 1 or unset, got ${JSON.stringify(raw)}`);
  return raw === '1';
}

/** A test-only stand-in server: loopback only, so a test can never reach Google, nor a deployment be pointed elsewhere. */
function loopbackServerForTests(env: Env, name: string, problems: string[]): string | undefined {
  const raw = testSetting(env, name, problems);
  if (raw === undefined) return undefined;
  if (!/^http:\/\/(127\.0\.0\.1|localhost):\d+$/.test(raw)) problems.push(`${name} must be http://127.0.0.1:PORT, got ${JSON.stringify(raw)}`);
  return raw;
}

/**
 * `auto` was to be the default only if the preview's masks scored within 0.01
 * IoU of the full model's at the preview's sizes; isnet-preview scores 0.06
 * below on the quality bench's composites (docs/models.md), so it is opt-in.
 */
const DEFAULT_PREVIEW_MODEL: PreviewModelSetting = 'off';

/**
 * PREVIEW_MODEL, and the preview variants it brings in: with `auto`, each
 * allowed model's preview (isnet-preview for isnet-fp32) becomes allowed too,
 * so `models:fetch` fetches it, GET /models lists it and the holder may load
 * it; the memory reserve counts it as loaded beside its base.
 */
function previewSetting(env: Env, allowedModels: readonly string[], problems: string[]): { previewModel: PreviewModelSetting; companions: ModelEntry[] } {
  const raw = env.PREVIEW_MODEL?.trim().toLowerCase() || DEFAULT_PREVIEW_MODEL;
  const known = (PREVIEW_MODEL_SETTINGS as readonly string[]).includes(raw);
  if (!known) problems.push(`PREVIEW_MODEL must be ${PREVIEW_MODEL_SETTINGS.join(' or ')}, got ${JSON.stringify(env.PREVIEW_MODEL)}`);
  const previewModel = known ? (raw as PreviewModelSetting) : DEFAULT_PREVIEW_MODEL;
  return { previewModel, companions: previewCompanions({ allowedModels, previewModel }) };
}

/**
 * Cloud Storage's rule for bucket names: 3 to 63 lower-case letters, digits,
 * `-`, `_` and `.` (up to 222 with dots), starting and ending with a letter or digit.
 */
const BUCKET_PATTERN = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;
/** An object name is at most 1,024 bytes of UTF-8 and holds no line break, so neither may a prefix. */
const MAX_OBJECT_NAME_BYTES = 1024;

const DEFAULT_MAX_EVENT_AGE_SECONDS = 3600;
/** Eventarc keeps retrying for 24 hours (some of Google's pages say 7 days), so a longer age would never be reached. */
const MAX_EVENT_AGE_LIMIT_SECONDS = 7 * 24 * 3600;
/** One retry of a failed call inside the instance costs seconds; Eventarc's redelivery costs 10 s or more, and the whole event again. */
const DEFAULT_STORAGE_RETRIES = 2;

/** Every setting that only removeBackgroundFromStorage reads: given any of them, the two buckets are required. */
const STORAGE_SETTINGS = ['INPUT_BUCKET', 'INPUT_PREFIX', 'OUTPUT_BUCKET', 'OUTPUT_PREFIX', 'STORAGE_OPTIONS', 'MAX_EVENT_AGE', 'STORAGE_RETRIES', STORAGE_ENDPOINT_SETTING];

function bucketSetting(env: Env, name: string, problems: string[]): string {
  const bucket = env[name]?.trim() ?? '';
  if (bucket === '') problems.push(`${STORAGE_FUNCTION} needs ${name}: the name of a bucket`);
  else if (!BUCKET_PATTERN.test(bucket)) {
    problems.push(`${name} must be a bucket's name (lower-case letters, digits, - _ and ., without gs://), got ${JSON.stringify(bucket)}`);
  }
  return bucket;
}

/** Kept as given, untrimmed: a prefix is compared byte for byte. */
function prefixSetting(env: Env, name: string, problems: string[]): string {
  const prefix = env[name] ?? '';
  if (/[\r\n]/.test(prefix) || Buffer.byteLength(prefix) >= MAX_OBJECT_NAME_BYTES) {
    problems.push(`${name} must be the start of an object name: no line break, under ${MAX_OBJECT_NAME_BYTES} bytes`);
  }
  return prefix;
}

const DURATION_UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 };

/** Whole seconds, or a number with s, m or h: `3600`, `90m`, `1h`. */
function durationSetting(env: Env, name: string, fallbackSeconds: number, maxSeconds: number, problems: string[]): number {
  const raw = env[name]?.trim();
  if (!raw) return fallbackSeconds * 1000;
  const match = /^(\d{1,9})\s*([smh]?)$/i.exec(raw);
  const seconds = match ? Number(match[1]) * DURATION_UNITS[match[2]!.toLowerCase() || 's']! : Number.NaN;
  if (!(seconds >= 60 && seconds <= maxSeconds)) {
    problems.push(`${name} must be a duration from 60 s to ${maxSeconds / 3600} h, such as 3600, 90m or 1h, got ${JSON.stringify(raw)}`);
    return fallbackSeconds * 1000;
  }
  return seconds * 1000;
}

/**
 * The loop guard. Every output's name starts with OUTPUT_PREFIX and every
 * processed input's with INPUT_PREFIX, so an output can set off another
 * removal only when the two buckets are one and some name could start with
 * both prefixes. In one bucket the prefixes must therefore be disjoint: both
 * non-empty, and neither the start of the other.
 */
function loopProblem(settings: Pick<StorageSettings, 'inputBucket' | 'inputPrefix' | 'outputBucket' | 'outputPrefix'>): string | undefined {
  const { inputBucket, inputPrefix, outputBucket, outputPrefix } = settings;
  if (inputBucket !== outputBucket) return undefined;
  if (inputPrefix !== '' && outputPrefix !== '' && !inputPrefix.startsWith(outputPrefix) && !outputPrefix.startsWith(inputPrefix)) return undefined;
  return (
    `OUTPUT_BUCKET is the trigger's bucket (INPUT_BUCKET ${inputBucket}), and INPUT_PREFIX ${JSON.stringify(inputPrefix)} and OUTPUT_PREFIX ${JSON.stringify(outputPrefix)} ` +
    'would let outputs trigger removals of their own: use another output bucket, or two prefixes of which neither starts the other (such as uploads/ and cutouts/)'
  );
}

/**
 * removeBackgroundFromStorage's settings: undefined when none is given and the
 * instance serves another function (FUNCTION_TARGET, which Cloud Run sets), so
 * the HTTP functions start without them.
 */
function storageSettings(env: Env, problems: string[]): StorageSettings | undefined {
  const given = STORAGE_SETTINGS.filter((name) => env[name]?.trim());
  if (given.length === 0 && env.FUNCTION_TARGET?.trim() !== STORAGE_FUNCTION) return undefined;
  const buckets = { inputBucket: bucketSetting(env, 'INPUT_BUCKET', problems), outputBucket: bucketSetting(env, 'OUTPUT_BUCKET', problems) };
  const settings: StorageSettings = {
    ...buckets,
    inputPrefix: prefixSetting(env, 'INPUT_PREFIX', problems),
    outputPrefix: prefixSetting(env, 'OUTPUT_PREFIX', problems),
    options: env.STORAGE_OPTIONS?.trim() ?? '',
    maxEventAgeMs: durationSetting(env, 'MAX_EVENT_AGE', DEFAULT_MAX_EVENT_AGE_SECONDS, MAX_EVENT_AGE_LIMIT_SECONDS, problems),
    retries: integerSetting(env, 'STORAGE_RETRIES', DEFAULT_STORAGE_RETRIES, problems, 10, 0),
    endpointForTests: loopbackServerForTests(env, STORAGE_ENDPOINT_SETTING, problems),
  };
  const loop = buckets.inputBucket && buckets.outputBucket ? loopProblem(settings) : undefined;
  if (loop) problems.push(loop);
  return Object.freeze(settings);
}

/** Reads and validates every setting at once, so start-up names all problems together. */
export function loadConfig(env: Env = process.env, readText: ReadText = readTextFile): Config {
  const problems: string[] = [];

  const model = env.MODEL?.trim() || registry.default;
  if (!findModel(model)) {
    problems.push(`MODEL ${JSON.stringify(model)} is not in the registry (known: ${modelNames().join(', ')})`);
  }

  // `*` for every registry model; names are checked here so that a typo stops start-up, not a request.
  const allowedRaw = env.ALLOWED_MODELS?.trim() || model;
  const allowedModels =
    allowedRaw === '*' ? modelNames() : [...new Set(allowedRaw.split(',').map((name) => name.trim()).filter((name) => name !== ''))];
  const unknownAllowed = allowedModels.filter((name) => !findModel(name));
  if (unknownAllowed.length > 0) {
    problems.push(`ALLOWED_MODELS names models not in the registry: ${unknownAllowed.join(', ')} (known: ${modelNames().join(', ')}, or * for all)`);
  } else if (!allowedModels.includes(model)) {
    problems.push(`ALLOWED_MODELS (${allowedModels.join(', ')}) must include MODEL ${model}`);
  }
  const preview = previewSetting(env, allowedModels, problems);
  for (const companion of preview.companions) if (!allowedModels.includes(companion.name)) allowedModels.push(companion.name);

  const logLevel = (env.LOG_LEVEL?.trim().toLowerCase() || 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(env.LOG_LEVEL)}`);

  const modelsDirRaw = env.MODELS_DIR?.trim();
  const modelsDir = modelsDirRaw ? path.resolve(modelsDirRaw) : DEFAULT_MODELS_DIR;

  const maxLoadedModels = integerSetting(env, 'MAX_LOADED_MODELS', 1, problems, 16);
  const maxConcurrentInferences = integerSetting(env, 'MAX_CONCURRENT_INFERENCES', 1, problems, 16);
  const memory = memoryLimit(env, problems, readText);
  const known = allowedModels.map(findModel).filter((entry) => entry !== undefined);
  const cpuArena = booleanSetting(env, 'INFER_CPU_ARENA', true, problems);
  const modelsMiB = modelsReserveMiB(known, { maxLoadedModels, maxConcurrentInferences, cpuArena }, preview.companions);
  // The cache can be full while removals run, so its bound is reserved like the models'.
  const maskCacheMiB = integerSetting(env, 'MASK_CACHE_MB', DEFAULT_MASK_CACHE_MIB, problems, 64 * 1024, 0);
  const requestMiB = Math.floor(memory.mib * (1 - MEMORY_MARGIN) - modelsMiB - maskCacheMiB);
  if (requestMiB < MIN_REQUEST_MEMORY_MIB) {
    problems.push(
      `${memory.mib} MiB of memory (from ${memory.source}) leaves ${requestMiB} MiB for requests: the models need about ${modelsMiB} MiB, ` +
        `the mask cache ${maskCacheMiB} MiB (MASK_CACHE_MB) and ${MEMORY_MARGIN * 100}% is kept as margin. ` +
        `Give the instance more memory, or lower MAX_LOADED_MODELS, MAX_CONCURRENT_INFERENCES or MASK_CACHE_MB${preview.companions.length > 0 ? ', or set PREVIEW_MODEL=off' : ''}.`,
    );
  }

  const auth = authModes(env, problems);

  const config: Config = {
    model,
    allowedModels: Object.freeze(allowedModels),
    previewModel: preview.previewModel,
    // Each loaded IS-Net holds about 0.3-0.5 GB resident, so one by default: a 2 GiB instance has room for one.
    maxLoadedModels,
    modelsDir,
    maxUploadBytes: integerSetting(env, 'MAX_UPLOAD_BYTES', 20 * MIB, problems, PLATFORM_REQUEST_LIMIT),
    maxInputPixels: integerSetting(env, 'MAX_INPUT_PIXELS', 40_000_000, problems, 268_402_689),
    // As large as the largest input: crop_margin may grow a canvas, but never past what an upload could be.
    maxOutputPixels: integerSetting(env, 'MAX_OUTPUT_PIXELS', 40_000_000, problems, 268_402_689),
    memoryLimitMiB: memory.mib,
    memoryLimitSource: memory.source,
    requestMemoryBytes: Math.max(0, requestMiB) * MIB,
    maskCacheBytes: maskCacheMiB * MIB,
    inferThreads: integerSetting(env, 'INFER_THREADS', os.availableParallelism(), problems, 64),
    cpuArena,
    port: integerSetting(env, 'PORT', 8080, problems, 65535, 0),
    maxConcurrentInferences,
    // A request waiting for memory holds only its compressed bytes; one waiting for the model holds its reservation.
    maxQueue: integerSetting(env, 'MAX_QUEUE', 4, problems, 1000, 0),
    // Each fetch holds up to MAX_UPLOAD_BYTES while it reads, inside the memory margin.
    maxConcurrentFetches: integerSetting(env, 'MAX_CONCURRENT_FETCHES', 4, problems, 64),
    // Under Cloud Functions' default 60 s timeout, so callers get our 504 rather than the platform's.
    requestTimeoutMs: integerSetting(env, 'REQUEST_TIMEOUT_MS', 55_000, problems, 3_600_000, 100),
    urlFetchTimeoutMs: integerSetting(env, 'URL_FETCH_TIMEOUT_MS', 10_000, problems, 600_000, 100),
    allowLoopbackUrlsForTests: loopbackForTests(env, problems),
    auth: Object.freeze(auth),
    apiKeys: Object.freeze(apiKeyHashes(env, auth, problems)),
    firebaseProjectId: firebaseProjectId(env, auth, problems),
    warmupServiceAccounts: Object.freeze(warmupServiceAccounts(env, auth, problems)),
    keyServerForTests: loopbackServerForTests(env, KEY_SERVER_SETTING, problems),
    rateLimitPerMinute: rateLimit(env, auth, problems),
    corsOrigins: Object.freeze(corsOrigins(env, problems)),
    logLevel,
    project: env.GOOGLE_CLOUD_PROJECT?.trim() || undefined,
    storage: storageSettings(env, problems),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(config);
}
