import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { createServices, type Services } from '../../functions/app';
import type { Config } from '../../functions/config';
import type { Logger } from '../../functions/log';
import type { ModelLoader } from '../../functions/model/holder';
import { createExpressApp } from '../../functions/server';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export function listen(server: Server): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

/** The functions framework's own test server for one registered function. */
export async function startFunction(name: 'health' | 'warmup' | 'removeBackground'): Promise<RunningServer> {
  const { getTestServer } = await import('@google-cloud/functions-framework/testing');
  return listen(getTestServer(name));
}

/** The local `npm start` server with its own holder, for tests that need a particular config. */
export async function startLocalServer(
  config: Config,
  loader?: ModelLoader,
  logger?: Logger,
  now?: () => number,
): Promise<RunningServer & { detourage: Services }> {
  const detourage = createServices(config, loader, logger, now);
  const running = await listen(createExpressApp(detourage).listen(0, '127.0.0.1'));
  const close = async (): Promise<void> => {
    await running.close();
    // Each server has its own holder: a file that starts several would otherwise keep every model resident.
    await Promise.all(detourage.holder.loadedModels().map((name) => detourage.holder.unload(name)));
  };
  return { ...running, close, detourage };
}
