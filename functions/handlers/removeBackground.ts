import type { Config } from '../config';
import { allowMethods, type HttpHandler, type HttpRequest, type HttpResponse, withRequestDeadline } from '../http';
import type { Gate } from '../model/gate';
import type { ModelHolder } from '../model/holder';
import type { StageTimings } from '../pipeline/run';
import { parseEncodeOptions, stringParameters } from '../request/options';
import { readUpload } from '../request/upload';
import { respondWarm } from './warmup';

export function serverTiming(timings: StageTimings): string {
  return Object.entries(timings)
    .map(([stage, ms]) => `${stage};dur=${ms.toFixed(1)}`)
    .join(', ');
}

export interface RemovalDeps {
  config: Config;
  holder: ModelHolder;
  /** Bounds the requests inside the pipeline: running plus waiting. */
  admission: Gate;
}

async function removeFromRequest(deps: RemovalDeps, request: HttpRequest, response: HttpResponse): Promise<void> {
  const upload = await readUpload(request, deps.config);
  const options = parseEncodeOptions({ ...stringParameters(request.query), ...upload.fields });
  const { removeBackground } = await import('../pipeline/run');
  const result = await withRequestDeadline(response, deps.config.requestTimeoutMs, (signal) =>
    // The slot is held until the pipeline has really stopped, even after a 504 went out.
    deps.admission.run(
      () => removeBackground(upload.image, options, { holder: deps.holder, maxInputPixels: deps.config.maxInputPixels, signal }),
      signal,
    ),
  );
  response.locals.model = result.model;
  response.locals.timings = Object.fromEntries(Object.entries(result.timings).map(([stage, ms]) => [stage, Math.round(ms)]));
  response
    .status(200)
    .set({
      'Content-Type': result.image.contentType,
      'Content-Length': String(result.image.body.length),
      'Cache-Control': 'no-store',
      'X-Width': String(result.image.width),
      'X-Height': String(result.image.height),
      'X-Model': result.model,
      'Server-Timing': serverTiming(result.timings),
    })
    .end(result.image.body);
}

/**
 * POST removes the background. GET warms this function's own instance: in
 * gen2 every function is its own Cloud Run service, so a ping to the separate
 * warmup function would never reach the instances that serve removals.
 */
export function removeBackgroundHandler(deps: RemovalDeps): HttpHandler {
  return allowMethods(['POST', 'GET'], (request, response) =>
    request.method === 'GET' ? respondWarm(deps.holder, response) : removeFromRequest(deps, request, response),
  );
}
