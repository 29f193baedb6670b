import type { Config } from '../config';
import { allowMethods, type HttpHandler, type HttpRequest, type HttpResponse, sendJson, withRequestDeadline } from '../http';
import type { ModelHolder } from '../model/holder';
import type { ModelEntry } from '../model/registry';
import type { MaskCache, MaskCacheOutcome } from '../pipeline/maskCache';
import type { RemovalJob, RemovalResult, StageTimings } from '../pipeline/removal';
import { readRemovalRequest } from '../request/removalRequest';
import { type Admission, admit, neverFits } from './admission';
import { respondWarm, type Warmups } from './warmup';

/**
 * One entry per stage that ran, and the mask cache's outcome as
 * `cache;desc=hit` or `miss` (its `dur` the hashing and lookup), or
 * `cache;desc=off` without a duration when the instance has no cache.
 */
export function serverTiming(timings: StageTimings, maskCache: MaskCacheOutcome): string {
  const entries = Object.entries(timings).map(([stage, ms]) => `${stage}${stage === 'cache' ? `;desc=${maskCache}` : ''};dur=${ms.toFixed(1)}`);
  if (timings.cache === undefined) entries.push(`cache;desc=${maskCache}`);
  return entries.join(', ');
}

/** What a removal runs with, in the HTTP function and the storage function alike. */
export interface RemovalServices {
  config: Config;
  holder: ModelHolder;
  /** Undefined when MASK_CACHE_MB=0. */
  maskCache: MaskCache | undefined;
  admission: Admission;
}

export interface RemovalDeps extends RemovalServices {
  warmups: Warmups;
}

/**
 * Plans the removal (headers read, model picked, peak memory estimated),
 * refuses one larger than the whole budget, then runs it holding its place
 * and its memory. `json`: the answer will carry the image as base64.
 */
export async function runRemoval(services: RemovalServices, job: RemovalJob, model: ModelEntry, json: boolean, signal: AbortSignal): Promise<RemovalResult> {
  const { config, admission } = services;
  const { planRemoval, removeBackground } = await import('../pipeline/removal');
  const plan = await planRemoval(job, model, config, json);
  if (plan.cost.bytes > admission.memory.capacity) throw neverFits(plan.cost, admission.memory.capacity, config);
  return admit(admission, plan.cost.bytes, signal, () => removeBackground(plan, { holder: services.holder, maskCache: services.maskCache, signal }));
}

/** Whole milliseconds per stage, for a log line. */
export function roundedTimings(timings: StageTimings): Record<string, number> {
  return Object.fromEntries(Object.entries(timings).map(([stage, ms]) => [stage, Math.round(ms)]));
}

/** remove.bg's JSON answer, for `Accept: application/json`. */
function wantsJson(request: HttpRequest): boolean {
  return request.accepts(['image/*', 'application/zip', 'application/json']) === 'application/json';
}

function resultHeaders(result: RemovalResult): Record<string, string> {
  const box = result.foreground ?? { top: 0, left: 0, width: 0, height: 0 };
  return {
    'Cache-Control': 'no-store',
    'X-Width': String(result.image.width),
    'X-Height': String(result.image.height),
    // remove.bg puts the foreground type here; a self-hosted caller wants to know the model.
    'X-Type': result.model,
    'X-Model': result.model,
    // Which inference passes made the mask (one, mirrored, zoomed), so a caller sees what quality paid for.
    'X-Quality': result.passes.join(','),
    'X-Foreground-Top': String(box.top),
    'X-Foreground-Left': String(box.left),
    'X-Foreground-Width': String(box.width),
    'X-Foreground-Height': String(box.height),
    'Server-Timing': serverTiming(result.timings, result.maskCache),
  };
}

function sendResult(request: HttpRequest, response: HttpResponse, result: RemovalResult): void {
  const headers = resultHeaders(result);
  if (wantsJson(request)) {
    const box = result.foreground ?? { top: 0, left: 0, width: 0, height: 0 };
    sendJson(
      response,
      200,
      {
        data: {
          result_b64: result.image.body.toString('base64'),
          content_type: result.image.contentType,
          width: result.image.width,
          height: result.image.height,
          model: result.model,
          passes: result.passes,
          foreground_top: box.top,
          foreground_left: box.left,
          foreground_width: box.width,
          foreground_height: box.height,
        },
      },
      headers,
    );
    return;
  }
  response
    .status(200)
    .set({ ...headers, 'Content-Type': result.image.contentType, 'Content-Length': String(result.image.body.length) })
    .end(result.image.body);
}

async function removeFromRequest(deps: RemovalDeps, request: HttpRequest, response: HttpResponse): Promise<void> {
  const { config, admission } = deps;
  const removal = await readRemovalRequest(request, config);
  const result = await withRequestDeadline(response, config.requestTimeoutMs, async (signal) => {
    // Uploads and base64 are in the body already; a URL is fetched under its own bound, before any place in the pipeline.
    const images = await (removal.fetchesUrl ? admission.fetches.run(() => removal.readImages(signal), signal) : removal.readImages(signal));
    return runRemoval(deps, { ...images, options: removal.options }, removal.model, wantsJson(request), signal);
  });
  response.locals.model = result.model;
  response.locals.timings = roundedTimings(result.timings);
  response.locals.maskCache = result.maskCache;
  response.locals.passes = result.passes.join(',');
  sendResult(request, response, result);
}

export const REMOVAL_METHODS = ['POST', 'GET'] as const;

/**
 * POST removes the background. GET warms this function's own instance: in
 * gen2 every function is its own Cloud Run service, so a ping to the separate
 * warmup function would never reach the instances that serve removals.
 */
export function removeBackgroundHandler(deps: RemovalDeps): HttpHandler {
  return allowMethods(REMOVAL_METHODS, (request, response) =>
    request.method === 'GET' ? respondWarm(deps, response) : removeFromRequest(deps, request, response),
  );
}
