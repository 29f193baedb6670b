import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from './config';
import { type Admission, createAdmission } from './handlers/admission';
import { healthHandler } from './handlers/health';
import { modelsHandler } from './handlers/models';
import { removeBackgroundHandler } from './handlers/removeBackground';
import { createWarmups, warmupHandler } from './handlers/warmup';
import { type HttpHandler, withRequestLog } from './http';
import { Logger } from './log';
import { ModelHolder, type ModelLoader } from './model/holder';
import { PROJECT_ROOT } from './model/registry';

export interface Detourage {
  config: Config;
  holder: ModelHolder;
  admission: Admission;
  logger: Logger;
  /** `models` is served by the local server only; the deployed functions are the other three. */
  handlers: { health: HttpHandler; warmup: HttpHandler; removeBackground: HttpHandler; models: HttpHandler };
}

export function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string };
  return manifest.version;
}

/** Wires the handlers to one shared model holder. */
export function createDetourage(config: Config, loader?: ModelLoader, logger?: Logger): Detourage {
  const log = logger ?? new Logger({ level: config.logLevel, pretty: process.stderr.isTTY === true });
  const holder = new ModelHolder(config, loader, log);
  const admission = createAdmission(config);
  const deps = { config, holder, admission, warmups: createWarmups(holder, admission), version: packageVersion(), startedAt: Date.now() };
  return {
    config,
    holder,
    admission,
    logger: log,
    handlers: {
      health: withRequestLog(log, config.project, healthHandler(deps)),
      warmup: withRequestLog(log, config.project, warmupHandler(deps)),
      removeBackground: withRequestLog(log, config.project, removeBackgroundHandler(deps)),
      models: withRequestLog(log, config.project, modelsHandler(deps)),
    },
  };
}
