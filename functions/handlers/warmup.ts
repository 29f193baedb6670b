import { allowMethods, type HttpHandler, type HttpResponse, sendJson } from '../http';
import type { ModelHolder } from '../model/holder';

/**
 * Answers only after the model is loaded and has run once: Cloud Run throttles
 * the CPU once a response is sent, so work after it would crawl.
 */
export async function respondWarm(holder: ModelHolder, response: HttpResponse): Promise<void> {
  const { warm } = await import('../pipeline/run');
  const result = await warm(holder);
  sendJson(response, 200, {
    status: 'warm',
    model: result.model,
    alreadyWarm: result.alreadyWarm,
    loadMs: Math.round(result.loadMs),
    inferMs: Math.round(result.inferMs),
  });
}

export function warmupHandler(deps: { holder: ModelHolder }): HttpHandler {
  return allowMethods(['GET', 'POST'], (_request, response) => respondWarm(deps.holder, response));
}
