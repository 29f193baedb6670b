import { invalidParameter } from '../errors';
import { findModel, type ModelEntry } from './registry';
import { checkWeights, weightsMissing } from './weights';

/**
 * The settings that decide which models a request may use: Config has these
 * fields, but the model layer sits below config.ts and takes only them.
 */
export interface ModelSelection {
  /** Registry name of the model a request that names none gets. */
  model: string;
  allowedModels: readonly string[];
}

/** A selection and where the weights are, to check a request's model is in place before loading it. */
export interface ModelLookup extends ModelSelection {
  modelsDir: string;
}

/**
 * The registry entry of an allowed model; no name means the configured one.
 * Unknown and not-allowed names are both a bad parameter value (400), not 403:
 * every caller is refused alike and the remedy is a different value. The
 * message lists only the allowed models, not the whole registry.
 */
export function allowedModel(selection: ModelSelection, requested: string | undefined): ModelEntry {
  const name = requested?.trim() || selection.model;
  const offered = `This server offers: ${selection.allowedModels.join(', ')}.`;
  const entry = findModel(name);
  if (!entry) throw invalidParameter('model', `Unknown model ${JSON.stringify(name)}. ${offered}`);
  if (!selection.allowedModels.includes(entry.name)) {
    throw invalidParameter('model', `Model ${entry.name} is not enabled on this server. ${offered}`);
  }
  return entry;
}

/**
 * A request's model: an allowed registry entry whose weights are in place.
 * The name is only ever looked up in the registry, so no request reaches the
 * filesystem with a path of its own.
 */
export function resolveModel(lookup: ModelLookup, requested: string | undefined): ModelEntry {
  const entry = allowedModel(lookup, requested);
  // Checked before any decoding or loading, so that the caller learns at once what to fetch. A file
  // that is there but wrong goes on to loadModel, which refuses it as corrupt, as it refuses any
  // file onnxruntime cannot load.
  if (checkWeights(entry, lookup.modelsDir, 'size') === 'missing') throw weightsMissing(entry);
  return entry;
}
