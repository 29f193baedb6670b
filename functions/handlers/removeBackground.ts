import type { Config } from '../config';
import { allowMethods, type HttpHandler, type HttpRequest, type HttpResponse } from '../http';
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

async function removeFromRequest(deps: { config: Config; holder: ModelHolder }, request: HttpRequest, response: HttpResponse): Promise<void> {
  const upload = await readUpload(request, deps.config);
  const options = parseEncodeOptions({ ...stringParameters(request.query), ...upload.fields });
  const { removeBackground } = await import('../pipeline/run');
  const result = await removeBackground(upload.image, options, {
    holder: deps.holder,
    maxInputPixels: deps.config.maxInputPixels,
  });
  response
    .status(200)
    .set({
      'Content-Type': result.image.contentType,
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
export function removeBackgroundHandler(deps: { config: Config; holder: ModelHolder }): HttpHandler {
  return allowMethods(['POST', 'GET'], (request, response) =>
    request.method === 'GET' ? respondWarm(deps.holder, response) : removeFromRequest(deps, request, response),
  );
}
