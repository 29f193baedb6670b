import fs from 'node:fs/promises';
import type { Config } from '../config';
import { allowMethods, type HttpHandler, sendJson } from '../http';
import type { ModelHolder } from '../model/holder';
import { type ModelEntry, modelFilePath, registry } from '../model/registry';

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

async function weightsInPlace(entry: ModelEntry, modelsDir: string): Promise<boolean> {
  try {
    const stat = await fs.stat(modelFilePath(modelsDir, entry));
    return stat.isFile() && (entry.bytes === null || stat.size === entry.bytes);
  } catch {
    return false;
  }
}

/** `GET /models` on the local server: what the demo page offers in its model picker. Never loads a model. */
export function modelsHandler(deps: { config: Config; holder: ModelHolder }): HttpHandler {
  return allowMethods(['GET', 'HEAD'], async (_request, response) => {
    const { config, holder } = deps;
    const models = await Promise.all(
      registry.models.map(
        async (entry): Promise<ModelListing> => ({
          name: entry.name,
          description: entry.description,
          license: entry.license,
          inputSize: entry.inputSize,
          default: entry.name === config.model,
          allowed: config.allowedModels.includes(entry.name),
          downloaded: await weightsInPlace(entry, config.modelsDir),
          loaded: holder.isModelLoaded(entry.name),
        }),
      ),
    );
    const body: ModelsBody = { default: config.model, models };
    sendJson(response, 200, body);
  });
}
