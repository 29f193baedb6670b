/**
 * One removal request read and checked, in the order that keeps a bad request
 * cheap: the body, the parameters' names, every value, the model, then which
 * images it sends. Only reading the images is left, because a URL is fetched
 * under the caller's deadline and a fetch slot.
 */
import type { ModelEntry } from '../model/registry';
import { type ModelLookup, resolveModel } from '../model/selection';
import type { RemovalOptions } from '../pipeline/options';
import { parseRemovalOptions } from './options';
import { checkParameterNames, type RequestParameters, stringParameters } from './parameters';
import { fetchesUrl, pickImageSources, readImageSources, type RequestImages, type SourceSettings } from './sources';
import { type RawRequest, readRequestBody, type UploadLimits } from './upload';

/** A removal's options, with the model's name resolved, and the model's entry. */
export interface ResolvedOptions {
  options: RemovalOptions & { model: string };
  model: ModelEntry;
}

export interface RemovalRequest extends ResolvedOptions {
  /** Whether reading the images fetches a URL, which admission bounds on its own. */
  fetchesUrl: boolean;
  readImages(signal?: AbortSignal): Promise<RequestImages>;
}

export type RemovalRequestSettings = UploadLimits & SourceSettings & ModelLookup;

/** Every value parsed, then the model: an allowed one whose weights are in place. */
export function resolveOptions(parameters: RequestParameters, settings: ModelLookup): ResolvedOptions {
  const requested = parseRemovalOptions(parameters);
  const model = resolveModel(settings, requested.model);
  return { options: { ...requested, model: model.name }, model };
}

export async function readRemovalRequest(
  request: RawRequest & { query?: unknown },
  settings: RemovalRequestSettings,
): Promise<RemovalRequest> {
  const body = await readRequestBody(request, settings);
  // The body's parameters win over the query string's.
  const parameters = { ...stringParameters(request.query), ...body.fields };
  checkParameterNames([...Object.keys(parameters), ...Object.keys(body.files)]);
  const resolved = resolveOptions(parameters, settings);
  const sources = pickImageSources(body, parameters);
  return {
    ...resolved,
    fetchesUrl: fetchesUrl(parameters),
    readImages: (signal) => readImageSources(sources, settings, signal),
  };
}
