import { createCallerGate, withCallerCheck } from './access/callers';
import { withCors } from './access/cors';
import { createRateLimiter } from './access/rateLimit';
import type { Config } from './config';
import { type Admission, createAdmission } from './handlers/admission';
import { HEALTH_METHODS, healthHandler } from './handlers/health';
import { modelsHandler } from './handlers/models';
import { REMOVAL_METHODS, removeBackgroundHandler } from './handlers/removeBackground';
import { type CloudEventHandler, removeBackgroundFromStorageHandler, unconfiguredStorageHandler } from './handlers/removeBackgroundFromStorage';
import { createWarmups, WARMUP_METHODS, warmupHandler } from './handlers/warmup';
import { type HttpHandler, type HttpRequest, withRequestLog } from './http';
import { Logger } from './log';
import { ModelHolder, type ModelLoader } from './model/holder';
import { MaskCache } from './pipeline/maskCache';
import { packageVersion } from './paths';

export interface Services {
  config: Config;
  holder: ModelHolder;
  /** The instance's model-resolution masks (MASK_CACHE_MB); undefined when 0. */
  maskCache: MaskCache | undefined;
  admission: Admission;
  logger: Logger;
  /** `models` is served by the local server only; the deployed functions are the other three. */
  handlers: { health: HttpHandler; warmup: HttpHandler; removeBackground: HttpHandler; models: HttpHandler };
  /** The CloudEvent function, on the same holder, admission and mask cache. */
  events: { removeBackgroundFromStorage: CloudEventHandler };
}

/**
 * Wires the handlers to one shared model holder and one mask cache. Each function answers CORS
 * first (a preflight carries no credentials), then checks its caller, then runs.
 * health checks no caller: it reveals only the version and whether the model
 * is loaded, costs nothing, and uptime checks and load balancers must reach it
 * without a key. warmup does check: it costs an inference.
 */
export function createServices(config: Config, loader?: ModelLoader, logger?: Logger, now: () => number = Date.now): Services {
  const log = logger ?? new Logger({ level: config.logLevel, pretty: process.stderr.isTTY === true });
  const holder = new ModelHolder(config, loader, log);
  const admission = createAdmission(config);
  const maskCache = config.maskCacheBytes > 0 ? new MaskCache(config.maskCacheBytes) : undefined;
  const deps = { config, holder, maskCache, admission, warmups: createWarmups(holder, admission), version: packageVersion(), startedAt: Date.now() };
  // Made now, so that a bad STORAGE_OPTIONS stops start-up rather than the first event.
  const storageEvents = config.storage ? removeBackgroundFromStorageHandler(deps, config.storage, log, now) : unconfiguredStorageHandler();
  const gate = createCallerGate(config, now);
  const limiter = config.rateLimitPerMinute === undefined ? undefined : createRateLimiter(config.rateLimitPerMinute, now);
  /** `isWarmup` says which of a function's requests only warm the model, which a scheduler's token may send; undefined: no caller check. */
  const serve = (methods: readonly string[], handler: HttpHandler, isWarmup?: (request: HttpRequest) => boolean): HttpHandler =>
    withRequestLog(log, config.project, withCors(config.corsOrigins, methods, isWarmup ? withCallerCheck(gate, limiter, isWarmup, handler) : handler));
  return {
    config,
    holder,
    maskCache,
    admission,
    logger: log,
    handlers: {
      health: serve(HEALTH_METHODS, healthHandler(deps)),
      warmup: serve(WARMUP_METHODS, warmupHandler(deps), () => true),
      // GET warms removeBackground's own instances; that is what the scheduled job sends.
      removeBackground: serve(REMOVAL_METHODS, removeBackgroundHandler(deps), (request) => request.method === 'GET'),
      // The demo page's model picker, on the local server only: no caller check, like health it reveals no more than the registry.
      models: serve(['GET', 'HEAD'], modelsHandler(deps)),
    },
    events: { removeBackgroundFromStorage: storageEvents },
  };
}
