import type { Config } from '../config';
import { allowMethods, type HttpHandler, type HttpRequest, type HttpResponse, sendJson, withRequestDeadline } from '../http';
import type { Gate } from '../model/gate';
import type { ModelHolder } from '../model/holder';
import { resolveModel } from '../model/selection';
import type { RemovalResult, StageTimings } from '../pipeline/run';
import { checkParameterNames, parseRemovalOptions, stringParameters } from '../request/options';
import { readRequestImages } from '../request/sources';
import { readRequestBody } from '../request/upload';
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
    'X-Foreground-Top': String(box.top),
    'X-Foreground-Left': String(box.left),
    'X-Foreground-Width': String(box.width),
    'X-Foreground-Height': String(box.height),
    'Server-Timing': serverTiming(result.timings),
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
  const { config } = deps;
  const body = await readRequestBody(request, config);
  // The body's parameters win over the query string's.
  const parameters = { ...stringParameters(request.query), ...body.fields };
  checkParameterNames([...Object.keys(parameters), ...Object.keys(body.files)]);
  const requested = parseRemovalOptions(parameters);
  const options = { ...requested, model: resolveModel(config, requested.model).name };
  const { removeBackground } = await import('../pipeline/run');
  const result = await withRequestDeadline(response, config.requestTimeoutMs, (signal) =>
    // The slot is held until the pipeline has really stopped, even after a 504 went out.
    deps.admission.run(async () => {
      const images = await readRequestImages(body, parameters, config, signal);
      return removeBackground({ ...images, options }, { holder: deps.holder, maxInputPixels: config.maxInputPixels, signal });
    }, signal),
  );
  response.locals.model = result.model;
  response.locals.timings = Object.fromEntries(Object.entries(result.timings).map(([stage, ms]) => [stage, Math.round(ms)]));
  sendResult(request, response, result);
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
