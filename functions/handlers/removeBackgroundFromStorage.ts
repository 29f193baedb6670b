/**
 * removeBackgroundFromStorage: a CloudEvent function for Cloud Storage's
 * `google.cloud.storage.object.v1.finalized`. It reads the new object, runs
 * the HTTP function's removal (the same model holder, admission and mask
 * cache), and writes the cutout to OUTPUT_BUCKET under OUTPUT_PREFIX, keeping
 * the input's name with the format's extension.
 *
 * Eventarc delivers at least once and redelivers whatever does not answer
 * 2xx (with --retry), so what it does with an event depends only on what is
 * in the buckets:
 * - an output whose metadata names this source generation means done: nothing is written again;
 * - every write has a generation precondition, so of two deliveries at once only one writes,
 *   and the other's 412 is acknowledged;
 * - an input that can never work (the API would answer it 4xx other than 429) is acknowledged
 *   and its error written beside the output as `<output>.error.json`, the API's own body;
 * - anything else (a model still loading, Cloud Storage's 5xx or 429, a timeout) is thrown,
 *   so the framework answers 500 and Eventarc redelivers, until MAX_EVENT_AGE, past which the
 *   event gets the error sidecar and is acknowledged.
 */
import type { CloudEvent } from '@google-cloud/functions-framework';
import path from 'node:path';
import { ConfigError, STORAGE_FUNCTION, type StorageSettings } from '../config';
import { ApiError, causeForLog, payloadTooLarge, toErrorResponse } from '../errors';
import { withDeadline } from '../http';
import type { LogFields, Logger, Severity } from '../log';
import type { RemovalResult } from '../pipeline/removal';
import { FILE_EXTENSIONS, type OutputFormat } from '../pipeline/types';
import { objectOptions, type StorageParameters, storageParameters } from '../request/objectParameters';
import { createObjectStore, type ObjectName, type ObjectStore, StorageFailure, type StoredObject } from '../storage/objects';
import { type RemovalServices, roundedTimings, runRemoval } from './removeBackground';

export const FINALIZED = 'google.cloud.storage.object.v1.finalized';

export type CloudEventHandler = (event: CloudEvent<unknown>) => Promise<void>;

/**
 * The custom metadata every object detourage writes carries: the source it
 * was made from. A redelivery compares its generation; its presence on an
 * input marks one of detourage's own objects, which is never processed.
 * (`source-…` is no parameter's name, so these never read as options.)
 */
export const SOURCE_KEYS = {
  bucket: 'detourage-source-bucket',
  name: 'detourage-source-name',
  generation: 'detourage-source-generation',
} as const;

export const ERROR_SIDECAR_SUFFIX = '.error.json';

export interface StorageDeps extends RemovalServices {
  storage: StorageSettings;
  store: ObjectStore;
  logger: Logger;
  /** The event's age is measured against it (tests give their own). */
  now: () => number;
}

/** What the event says about its object; int64 fields arrive as strings in real events and as numbers in some fixtures. */
interface ObjectEvent {
  id: string;
  type: string;
  bucket: string;
  name: string;
  generation: string;
  size: number | undefined;
  metadata: Readonly<Record<string, string>>;
  /**
   * How old the event was when it arrived: from the CloudEvent's `time`, else
   * the object's timeCreated; undefined when neither reads as a time.
   */
  ageMs: number | undefined;
}

type Outcome = 'written' | 'duplicate' | 'superseded' | 'lost-race' | 'conflict' | 'skipped' | 'refused' | 'expired' | 'retry';

/** What the event's log line says, filled in as it goes. */
interface Report {
  outcome: Outcome;
  reason?: string;
  output?: string;
  model?: string;
  error?: LogFields;
  storageMs: Record<string, number>;
  timingsMs?: Record<string, number>;
}

/** A decimal int64 from a string or a number; undefined for anything else. */
function int64Text(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? String(value) : undefined;
  if (typeof value === 'string' && /^\d{1,19}$/.test(value)) return BigInt(value).toString();
  return undefined;
}

function timeOf(value: unknown): number | undefined {
  const time = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  return Number.isNaN(time) ? undefined : time;
}

/** The event's data as an object: structured mode gives it parsed; binary mode with a non-JSON content type, as bytes or text. */
function dataOf(event: CloudEvent<unknown>): Record<string, unknown> | undefined {
  let data: unknown = event.data;
  if (Buffer.isBuffer(data)) data = data.toString('utf8');
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      return undefined;
    }
  }
  return data !== null && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : undefined;
}

function stringMap(value: unknown): Record<string, string> {
  if (value === null || typeof value !== 'object') return {};
  return Object.fromEntries(Object.entries(value).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
}

/** The object the event names, or undefined when the event lacks its bucket, name or generation. */
function objectEvent(event: CloudEvent<unknown>, arrivedAt: number): ObjectEvent | undefined {
  const data = dataOf(event);
  const generation = int64Text(data?.generation);
  if (!data || typeof data.bucket !== 'string' || typeof data.name !== 'string' || data.name === '' || generation === undefined) return undefined;
  const size = int64Text(data.size);
  const occurredAt = timeOf(event.time) ?? timeOf(data.timeCreated);
  return {
    id: String(event.id),
    type: String(event.type),
    bucket: data.bucket,
    name: data.name,
    generation,
    size: size === undefined ? undefined : Number(size),
    metadata: stringMap(data.metadata),
    ageMs: occurredAt === undefined ? undefined : arrivedAt - occurredAt,
  };
}

/** Why the function leaves this object alone, or undefined when it is an input to process. */
function skipReason(settings: StorageSettings, event: ObjectEvent): string | undefined {
  if (event.type !== FINALIZED) return `not a ${FINALIZED} event`;
  if (event.name.endsWith('/')) return 'a folder placeholder';
  if (event.bucket !== settings.inputBucket) return `not of INPUT_BUCKET ${settings.inputBucket}`;
  // At start the loop guard made the prefixes disjoint in one bucket; this names the reason in the log.
  if (event.bucket === settings.outputBucket && event.name.startsWith(settings.outputPrefix)) return 'under OUTPUT_PREFIX';
  if (SOURCE_KEYS.generation in event.metadata) return "detourage's own output (its metadata names a source)";
  if (!event.name.startsWith(settings.inputPrefix)) return 'not under INPUT_PREFIX';
  return undefined;
}

/** photos/a.jpeg → OUTPUT_PREFIX + photos/a.png; a name without an extension gets one. */
function outputName(settings: StorageSettings, name: string, format: OutputFormat): string {
  const stem = name.slice(0, name.length - path.posix.extname(name).length);
  return `${settings.outputPrefix}${stem}.${FILE_EXTENSIONS[format]}`;
}

/** Cloud Storage's bound on a name, which the output's error sidecar must fit too. */
const MAX_NAME_BYTES = 1024;

type Claim = { kind: 'free'; ifGenerationMatch: string } | { kind: 'duplicate' | 'superseded' | 'conflict'; holder: string };

/**
 * What may be written at a name, from the object there now: anything when
 * there is none (create only); a replacement of that generation when it is
 * this source's output of an older generation; nothing when it is this
 * generation's (a redelivery) or a newer one's (a late event). An object
 * detourage did not make from this source is never overwritten.
 */
function claim(existing: StoredObject | null, event: ObjectEvent): Claim {
  if (existing === null) return { kind: 'free', ifGenerationMatch: '0' };
  const source = existing.metadata;
  const done = int64Text(source[SOURCE_KEYS.generation]);
  const holder =
    source[SOURCE_KEYS.generation] === undefined
      ? 'none recorded: detourage did not write it'
      : `gs://${source[SOURCE_KEYS.bucket] ?? ''}/${source[SOURCE_KEYS.name] ?? ''}#${source[SOURCE_KEYS.generation]}`;
  if (done === undefined || source[SOURCE_KEYS.bucket] !== event.bucket || source[SOURCE_KEYS.name] !== event.name) return { kind: 'conflict', holder };
  const order = BigInt(done) - BigInt(event.generation);
  if (order === 0n) return { kind: 'duplicate', holder };
  if (order > 0n) return { kind: 'superseded', holder };
  return { kind: 'free', ifGenerationMatch: existing.generation };
}

/** Only an answer the API gives as 4xx other than 429 is the input's own fault; the rest may pass when delivered again. */
function isPermanent(error: unknown): boolean {
  const { status } = toErrorResponse(error);
  return status >= 400 && status < 500 && status !== 429;
}

/**
 * Eventarc sends no attempt count. A first delivery comes within seconds of
 * the event, and its backoff starts at 10 s and doubles up to 600 s, so the
 * age says how many deliveries could have come before this one: an estimate,
 * and high when a backlog rather than failures aged the event.
 */
export function deliveryAttemptEstimate(ageMs: number): number {
  let attempt = 1;
  let waited = 0;
  for (let delay = 10_000; waited + delay <= ageMs; delay = Math.min(delay * 2, 600_000)) {
    waited += delay;
    attempt += 1;
  }
  return attempt;
}

function gsUrl(object: ObjectName): string {
  return `gs://${object.bucket}/${object.name}`;
}

function expired(ageMs: number, maxAgeMs: number): ApiError {
  return new ApiError(
    'timeout',
    `The event is ${Math.round(ageMs / 1000)} s old, older than MAX_EVENT_AGE (${maxAgeMs / 1000} s): it was given up rather than retried again. ` +
      'Upload the object again to process it.',
  );
}

interface EventContext {
  deps: StorageDeps;
  defaults: StorageParameters;
  event: ObjectEvent;
  report: Report;
}

async function timed<T>(report: Report, step: string, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    report.storageMs[step] = Math.round((report.storageMs[step] ?? 0) + performance.now() - started);
  }
}

/** An event whose output is taken: by this generation (a redelivery), a newer one, or another source. */
function untouched(report: Report, object: ObjectName, claimed: Exclude<Claim, { kind: 'free' }>): void {
  report.output = gsUrl(object);
  report.outcome = claimed.kind;
  report.reason =
    claimed.kind === 'conflict' ? `${gsUrl(object)} was not made from this object (its source: ${claimed.holder})` : `${gsUrl(object)} was made from ${claimed.holder}`;
}

/** Writes `body` at `object` under the claim `existing` (what is there now) allows, and says what became of the event. */
async function writeClaimed(context: EventContext, object: ObjectName, existing: StoredObject | null, body: Buffer, contentType: string, done: Outcome): Promise<void> {
  const { deps, event, report } = context;
  report.output = gsUrl(object);
  const claimed = claim(existing, event);
  if (claimed.kind !== 'free') return untouched(report, object, claimed);
  const metadata = { [SOURCE_KEYS.bucket]: event.bucket, [SOURCE_KEYS.name]: event.name, [SOURCE_KEYS.generation]: event.generation };
  const written = await timed(report, 'write', () => deps.store.write(object, { body, contentType, metadata, ifGenerationMatch: claimed.ifGenerationMatch }));
  report.outcome = written === 'written' ? done : 'lost-race';
  if (written !== 'written') report.reason = 'another delivery wrote it first (412)';
}

/** The error sidecar: the API's JSON body for `error`, beside where the output would be. */
async function writeRefusal(context: EventContext, output: ObjectName, error: unknown, outcome: 'refused' | 'expired'): Promise<void> {
  const { body } = toErrorResponse(error);
  context.report.error = { code: body.error.code, ...causeForLog(error) };
  const sidecar = { bucket: output.bucket, name: `${output.name}${ERROR_SIDECAR_SUFFIX}` };
  const existing = await timed(context.report, 'describe', () => context.deps.store.describe(sidecar));
  await writeClaimed(context, sidecar, existing, Buffer.from(`${JSON.stringify(body)}\n`), 'application/json', outcome);
}

async function removeAndWrite(context: EventContext, signal: AbortSignal): Promise<void> {
  const { deps, defaults, event, report } = context;
  const { config, storage } = deps;
  const source = { bucket: event.bucket, name: event.name };
  // Bad options in the metadata are the object's fault, but its output's name still needs a format: STORAGE_OPTIONS' then.
  let options: ReturnType<typeof objectOptions> | undefined;
  let refusal: unknown;
  try {
    options = objectOptions(defaults.parameters, event.metadata, config);
  } catch (error) {
    if (!isPermanent(error)) throw error;
    refusal = error;
  }
  const output = { bucket: storage.outputBucket, name: outputName(storage, event.name, options?.format ?? defaults.format) };
  if (Buffer.byteLength(output.name + ERROR_SIDECAR_SUFFIX) > MAX_NAME_BYTES) {
    report.outcome = 'skipped';
    report.reason = `the output's name would be over ${MAX_NAME_BYTES} bytes`;
    return;
  }
  // A redelivery of a finished event stops here, before any reading or inference.
  const existing = await timed(report, 'describe', () => deps.store.describe(output));
  const earlier = claim(existing, event);
  if (earlier.kind !== 'free') return untouched(report, output, earlier);
  if (event.ageMs !== undefined && event.ageMs > storage.maxEventAgeMs) return writeRefusal(context, output, expired(event.ageMs, storage.maxEventAgeMs), 'expired');

  let result: RemovalResult;
  try {
    if (options === undefined) throw refusal;
    // An object over the limit is never read: a generation's size is fixed, and an event without one has it looked up.
    const size = event.size ?? (await timed(report, 'size', () => deps.store.sizeOf(source, event.generation)));
    if (size !== null && size > config.maxUploadBytes) throw payloadTooLarge('The object', config.maxUploadBytes);
    const bytes = size === null ? null : await timed(report, 'read', () => deps.store.read(source, event.generation));
    if (bytes === null) {
      report.outcome = 'skipped';
      report.reason = `generation ${event.generation} is no longer there`;
      return;
    }
    if (bytes.length > config.maxUploadBytes) throw payloadTooLarge('The object', config.maxUploadBytes);
    if (bytes.length === 0) throw new ApiError('missing_image', 'The object is empty.');
    result = await runRemoval(deps, { image: bytes, backgroundImage: null, options: options.options }, options.model, false, signal);
  } catch (error) {
    if (!isPermanent(error)) throw error;
    return writeRefusal(context, output, error, 'refused');
  }
  report.model = result.model;
  report.timingsMs = roundedTimings(result.timings);
  return writeClaimed(context, output, existing, result.image.body, result.image.contentType, 'written');
}

/** A failed storage call is named as such (its message says which call and what it answered), anything else by the API's code. */
function failureForLog(error: unknown): LogFields {
  if (error instanceof StorageFailure) return { code: 'storage', ...(error.status === undefined ? {} : { status: error.status }), cause: error.message };
  return { code: toErrorResponse(error).body.error.code, ...causeForLog(error) };
}

const SEVERITY: Readonly<Record<Outcome, Severity>> = {
  written: 'INFO',
  duplicate: 'INFO',
  superseded: 'INFO',
  'lost-race': 'INFO',
  // Two inputs that differ only in their extension (a.jpg, a.png) share an output's name: the first keeps it.
  conflict: 'WARNING',
  skipped: 'INFO',
  refused: 'WARNING',
  expired: 'WARNING',
  retry: 'WARNING',
};

/** One line per event: the object, the outcome and why, the timings, and how old the event was. */
function logEvent(deps: StorageDeps, source: CloudEvent<unknown>, event: ObjectEvent | undefined, report: Report, totalMs: number): void {
  const ageMs = event?.ageMs;
  // A failure nobody expected is an error; a model still loading or a storage hiccup is a warning.
  const severity = report.outcome === 'retry' && report.error?.code === 'internal' ? 'ERROR' : SEVERITY[report.outcome];
  deps.logger.log(severity, `${STORAGE_FUNCTION} ${report.outcome}`, {
    event: {
      id: source.id,
      type: source.type,
      ...(event ? { object: `gs://${event.bucket}/${event.name}`, generation: event.generation } : {}),
    },
    outcome: report.outcome,
    ...(report.reason ? { reason: report.reason } : {}),
    ...(report.output ? { output: report.output } : {}),
    ...(report.model ? { model: report.model } : {}),
    ...(report.error ? { error: report.error } : {}),
    totalMs: Math.round(totalMs),
    storageMs: report.storageMs,
    ...(report.timingsMs ? { timingsMs: report.timingsMs } : {}),
    ...(ageMs === undefined ? {} : { eventAgeMs: Math.round(ageMs), deliveryAttemptEstimate: deliveryAttemptEstimate(ageMs) }),
  });
}

/** STORAGE_OPTIONS through the API's parser, at start: a bad value stops start-up as any bad setting does. */
function checkedParameters(services: RemovalServices, storage: StorageSettings): StorageParameters {
  try {
    return storageParameters(storage.options, services.config);
  } catch (error) {
    if (error instanceof ApiError) throw new ConfigError([`STORAGE_OPTIONS: ${error.message}`]);
    throw error;
  }
}

export function removeBackgroundFromStorageHandler(services: RemovalServices, storage: StorageSettings, logger: Logger, now: () => number): CloudEventHandler {
  const defaults = checkedParameters(services, storage);
  // No call outlives the event: each is bounded by the event's own deadline.
  const store = createObjectStore({ retries: storage.retries, timeoutMs: services.config.requestTimeoutMs, endpoint: storage.endpointForTests });
  const deps: StorageDeps = { ...services, storage, store, logger, now };
  return async (source) => {
    const started = performance.now();
    const report: Report = { outcome: 'skipped', storageMs: {} };
    const event = objectEvent(source, now());
    try {
      if (event === undefined) {
        // It can never work, so it is acknowledged: redelivering it would bring the same bytes again.
        report.reason = 'the event names no object (bucket, name and generation)';
        return;
      }
      const skip = skipReason(storage, event);
      if (skip !== undefined) {
        report.reason = skip;
        return;
      }
      await withDeadline(services.config.requestTimeoutMs, (signal) => removeAndWrite({ deps, defaults, event, report }, signal));
    } catch (error) {
      report.outcome = 'retry';
      report.error = failureForLog(error);
      throw error;
    } finally {
      logEvent(deps, source, event, report, performance.now() - started);
    }
  };
}

/** Registered where the settings are absent, so that index.ts registers every function alike; Cloud Run never routes an event there. */
export function unconfiguredStorageHandler(): CloudEventHandler {
  return () => Promise.reject(new Error(`${STORAGE_FUNCTION} has no settings: set INPUT_BUCKET and OUTPUT_BUCKET (FUNCTION_TARGET=${STORAGE_FUNCTION} requires them at start).`));
}
