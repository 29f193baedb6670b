/**
 * `npm start`: the three functions on one port, at the paths of the Cloud Run
 * service detourage replaces. The body is read into `rawBody` exactly as the
 * functions framework does, so handlers run unchanged.
 */
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createServices, type Services } from './app';
import { type Config, ConfigError, loadConfig } from './config';
import { ApiError } from './errors';
import { sendError } from './http';
import { PROJECT_ROOT } from './paths';

const DEMO_DIR = path.join(PROJECT_ROOT, 'functions', 'demo');
export const OPENAPI_PATH = path.join(PROJECT_ROOT, 'functions', 'openapi.json');

const ROUTES: Record<string, keyof Services['handlers']> = {
  '/': 'health',
  '/health': 'health',
  '/warmup': 'warmup',
  '/remove-background': 'removeBackground',
  // remove.bg's own path, so a client of theirs needs only a new base URL.
  '/v1.0/removebg': 'removeBackground',
  '/models': 'models',
};

export function createExpressApp(detourage: Services): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(
    express.raw({
      type: () => true,
      // Over this the platform itself would refuse the request; the handler enforces the real limit.
      limit: detourage.config.maxUploadBytes * 2 + 1024 * 1024,
      verify: (request, _response, buffer) => {
        (request as Request & { rawBody?: Buffer }).rawBody = buffer;
      },
    }),
  );
  for (const [route, name] of Object.entries(ROUTES)) {
    app.all(route, (request, response) => detourage.handlers[name](request, response));
  }
  app.get('/openapi.json', (_request, response) => response.type('application/json').sendFile(OPENAPI_PATH));
  app.get('/demo', (_request, response) => response.sendFile(path.join(DEMO_DIR, 'index.html')));
  app.use('/demo', express.static(DEMO_DIR, { index: false, redirect: false }));
  app.use((request: Request, response: Response) => {
    sendError(response, new ApiError('not_found', `No route ${request.method} ${request.path}.`));
  });
  app.use((error: Error & { status?: number; type?: string }, _request: Request, response: Response, _next: NextFunction) => {
    if (error.type === 'entity.too.large') {
      sendError(response, new ApiError('payload_too_large', `The upload is larger than ${detourage.config.maxUploadBytes} bytes.`));
    } else if (error.status !== undefined && error.status < 500) {
      sendError(response, new ApiError('bad_request', 'The request body could not be read.'));
    } else {
      sendError(response, error);
    }
  });
  return app;
}

export function startServer(config: Config): Promise<Server> {
  const detourage = createServices(config);
  const server = createExpressApp(detourage).listen(config.port);
  return new Promise((resolve, reject) => {
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}

const SHUTDOWN_GRACE_MS = 10_000;

/** Serves until SIGTERM, then stops accepting and lets in-flight requests finish. */
export async function serveUntilTerminated(config: Config, log: (line: string) => void = console.log): Promise<void> {
  const server = await startServer(config);
  const { port } = server.address() as AddressInfo;
  log(`detourage listening on http://localhost:${port} (model ${config.model}, loaded on first use; demo at /demo)`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => {
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(resolve, SHUTDOWN_GRACE_MS).unref();
    });
  });
}

async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    console.error(error instanceof ConfigError ? error.message : error);
    process.exit(78);
  }
  await serveUntilTerminated(config);
  process.exit(0);
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
