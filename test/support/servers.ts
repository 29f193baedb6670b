import { createServices, type Services } from '../../functions/app';
import { type Config, loadConfig } from '../../functions/config';
import type { Logger } from '../../functions/log';
import type { ModelLoader } from '../../functions/model/holder';
import { loadModel } from '../../functions/model/session';
import { createExpressApp } from '../../functions/server';
import { listen, type RunningServer } from '../../tools/lib/http';

/** The functions functions/index.ts registers, by the names they are deployed under. */
const FUNCTIONS = ['health', 'warmup', 'removeBackground'] as const;

/** The functions framework's own test server for one registered function. */
export async function startFunction(name: (typeof FUNCTIONS)[number]): Promise<RunningServer> {
  const { getTestServer } = await import('@google-cloud/functions-framework/testing');
  return listen(getTestServer(name));
}

/** How many loads the holder started, failed ones included: counted in the loader the test gave it, so the holder keeps no count for tests. */
interface LoadCounter {
  readonly loadCount: number;
}

/** Services made for a test, and the loads their holder has started. */
export type CountedServices = LoadCounter & { detourage: Services };

function countLoads(loader: ModelLoader): { loader: ModelLoader; counter: LoadCounter } {
  let loads = 0;
  return {
    loader: (entry, settings) => {
      loads += 1;
      return loader(entry, settings);
    },
    counter: {
      get loadCount() {
        return loads;
      },
    },
  };
}

/**
 * The three deployed functions, registered with the functions framework under
 * the names functions/index.ts gives them, on services of the test's own whose
 * loads it counts (the real loader). The configuration is read from the
 * environment now, as an instance reads it on start; startFunction serves them.
 */
export async function registerFunctions(): Promise<CountedServices> {
  const { http } = await import('@google-cloud/functions-framework');
  const { loader, counter } = countLoads(loadModel);
  const detourage = createServices(loadConfig(), loader);
  for (const name of FUNCTIONS) http(name, detourage.handlers[name]);
  return Object.assign(counter, { detourage });
}

export type LocalServer = RunningServer & CountedServices;

/** The local `npm start` server with its own holder, for tests that need a particular config; `loader` defaults to the real one. */
export async function startLocalServer(config: Config, loader: ModelLoader = loadModel, logger?: Logger, now?: () => number): Promise<LocalServer> {
  const counted = countLoads(loader);
  const detourage = createServices(config, counted.loader, logger, now);
  const running = await listen(createExpressApp(detourage).listen(0, '127.0.0.1'));
  const close = async (): Promise<void> => {
    await running.close();
    // Each server has its own holder: a file that starts several would otherwise keep every model resident.
    const { config: settings, holder } = detourage;
    await Promise.all(settings.allowedModels.filter((name) => holder.isModelLoaded(name)).map(async (name) => (await holder.get(name)).release()));
  };
  return Object.assign(counted.counter, running, { close, detourage });
}
