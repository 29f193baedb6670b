import { invalidParameter } from '../errors';
import { findModel, type ModelEntry, previewOf } from './registry';
import { checkWeights, weightsMissing } from './weights';

/** PREVIEW_MODEL: `auto` runs a model's preview variant for small results, `off` never does. */
export type PreviewModelSetting = 'off' | 'auto';
export const PREVIEW_MODEL_SETTINGS: readonly PreviewModelSetting[] = ['off', 'auto'];

/**
 * The settings that decide which models a request may use: Config has these
 * fields, but the model layer sits below config.ts and takes only them.
 */
export interface ModelSelection {
  /** Registry name of the model a request that names none gets. */
  model: string;
  allowedModels: readonly string[];
  previewModel: PreviewModelSetting;
}

/** What decides whether a preview may run: the allowed models and PREVIEW_MODEL. */
export type PreviewSelection = Pick<ModelSelection, 'allowedModels' | 'previewModel'>;

/**
 * The preview variants that PREVIEW_MODEL=auto puts beside the allowed
 * models they stand in for. Config adds them to the allowed models (so they
 * are fetched, listed and loadable) and reserves their memory; the holder
 * keeps them loaded beside their base without counting them against
 * MAX_LOADED_MODELS, since traffic that mixes small and large results would
 * otherwise unload one for the other on every switch.
 */
export function previewCompanions(selection: PreviewSelection): ModelEntry[] {
  if (selection.previewModel !== 'auto') return [];
  return selection.allowedModels.flatMap((name) => {
    const preview = previewOf(name);
    return preview ? [preview] : [];
  });
}

/**
 * The model a removal runs, once the size of its result is known: the
 * requested model's preview variant when PREVIEW_MODEL is auto, the variant
 * is allowed, and the processed image has at most its previewMaxPixels;
 * otherwise the requested model. Only the model a preview was derived from
 * is ever replaced, so a request that names another model keeps it.
 */
export function modelToRun(selection: PreviewSelection, requested: ModelEntry, pixels: number): ModelEntry {
  const preview = selection.previewModel === 'auto' ? previewOf(requested.name) : undefined;
  if (!preview || !selection.allowedModels.includes(preview.name) || pixels > (preview.previewMaxPixels ?? 0)) return requested;
  return preview;
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
