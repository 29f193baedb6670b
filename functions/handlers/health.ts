import { allowMethods, type HttpHandler, sendJson } from '../http';
import type { ModelHolder } from '../model/holder';

export interface HealthBody {
  status: 'ok';
  version: string;
  model: { name: string; loaded: boolean };
  uptimeSeconds: number;
}

export const HEALTH_METHODS = ['GET', 'HEAD'] as const;

/** Never loads the model and imports neither onnxruntime nor sharp, so it answers at once. */
export function healthHandler(deps: { holder: ModelHolder; version: string; startedAt: number }): HttpHandler {
  return allowMethods(HEALTH_METHODS, (_request, response) => {
    const body: HealthBody = {
      status: 'ok',
      version: deps.version,
      model: { name: deps.holder.entry.name, loaded: deps.holder.isLoaded },
      uptimeSeconds: Math.round((Date.now() - deps.startedAt) / 1000),
    };
    sendJson(response, 200, body);
    return Promise.resolve();
  });
}
