import type { Config } from '../config';
import { allowMethods, type HttpHandler, type HttpResponse, sendJson, withRequestDeadline } from '../http';
import type { ModelHolder } from '../model/holder';
import type { WarmupResult } from '../pipeline/removal';
import { type Admission, admit } from './admission';

/**
 * An instance that finished an inference this recently is warm: a warmup
 * answers at once. Shorter than the scheduled ping's 10 minutes, so an idle
 * instance still runs one inference per ping and keeps its pages resident.
 */
export const RECENT_INFERENCE_MS = 5 * 60_000;

interface SharedWarmup {
  result: Promise<WarmupResult>;
  /** Callers still waiting for it; when the last one leaves before it started, it is dropped. */
  callers: number;
  controller: AbortController;
}

/**
 * Warmups share one inference: a ping, a flood of them, or a scheduler that
 * retries, cost the instance one inference at most, and none when it has
 * just run one. The shared warmup goes through admission like a removal.
 */
export interface Warmups {
  warm(signal: AbortSignal): Promise<WarmupResult>;
}

export function createWarmups(holder: ModelHolder, admission: Admission): Warmups {
  let shared: SharedWarmup | null = null;

  const start = (): SharedWarmup => {
    const controller = new AbortController();
    const started: SharedWarmup = {
      callers: 0,
      controller,
      result: (async () => {
        const { estimateWarmup } = await import('../pipeline/cost');
        const { warm } = await import('../pipeline/removal');
        return admit(admission, estimateWarmup(holder.entry), controller.signal, () => warm(holder, controller.signal));
      })(),
    };
    const forget = (): void => {
      if (shared === started) shared = null;
    };
    started.result.then(forget, forget);
    return started;
  };

  return {
    async warm(signal) {
      if (holder.isLoaded && holder.msSinceInference < RECENT_INFERENCE_MS) {
        return { model: holder.entry.name, alreadyWarm: true, loadMs: 0, inferMs: 0 };
      }
      const joined = (shared ??= start());
      joined.callers += 1;
      const leave = (): void => {
        joined.callers -= 1;
        if (joined.callers > 0) return;
        // Nobody is left to answer: a warmup still waiting never runs, and the next caller starts afresh.
        if (shared === joined) shared = null;
        joined.controller.abort(signal.reason);
      };
      signal.addEventListener('abort', leave, { once: true });
      try {
        return await joined.result;
      } finally {
        signal.removeEventListener('abort', leave);
      }
    },
  };
}

export interface WarmupDeps {
  config: Config;
  warmups: Warmups;
}

/**
 * Answers only after the model is loaded and has run once: Cloud Run throttles
 * the CPU once a response is sent, so work after it would crawl.
 */
export async function respondWarm(deps: WarmupDeps, response: HttpResponse): Promise<void> {
  const result = await withRequestDeadline(response, deps.config.requestTimeoutMs, (signal) => deps.warmups.warm(signal));
  sendJson(response, 200, {
    status: 'warm',
    model: result.model,
    alreadyWarm: result.alreadyWarm,
    loadMs: Math.round(result.loadMs),
    inferMs: Math.round(result.inferMs),
  });
}

export const WARMUP_METHODS = ['GET', 'POST'] as const;

export function warmupHandler(deps: WarmupDeps): HttpHandler {
  return allowMethods(WARMUP_METHODS, (_request, response) => respondWarm(deps, response));
}
