import type { Config } from '../config';
import { allowMethods, type HttpHandler, sendJson } from '../http';
import type { ModelHolder } from '../model/holder';
import { registry } from '../model/registry';
import { checkWeights } from '../model/weights';

export interface ModelListing {
  name: string;
  description: string;
  license: string;
  inputSize: number;
  /** Used when a request names no model (MODEL). */
  default: boolean;
  /** A request may name it (ALLOWED_MODELS). */
  allowed: boolean;
  /** Its weights file is in the models directory, of the registry's size where known; not re-hashed per request. */
  downloaded: boolean;
  loaded: boolean;
}

export interface ModelsBody {
  default: string;
  models: ModelListing[];
}

/** `GET /models` on the local server: what the demo page offers in its model picker. Never loads a model. */
export function modelsHandler(deps: { config: Config; holder: ModelHolder }): HttpHandler {
  return allowMethods(['GET', 'HEAD'], (_request, response) => {
    const { config, holder } = deps;
    const models = registry.models.map(
      (entry): ModelListing => ({
        name: entry.name,
        description: entry.description,
        license: entry.license,
        inputSize: entry.inputSize,
        default: entry.name === config.model,
        allowed: config.allowedModels.includes(entry.name),
        downloaded: checkWeights(entry, config.modelsDir, 'size') === 'present',
        loaded: holder.isModelLoaded(entry.name),
      }),
    );
    const body: ModelsBody = { default: config.model, models };
    sendJson(response, 200, body);
    return Promise.resolve();
  });
}
