/**
 * The parameters of a bucket object's removal: the HTTP API's value
 * parameters, from STORAGE_OPTIONS and then the object's own custom metadata
 * (`detourage-format`, …), read by the API's own table and parsers, so that a
 * refusal carries the code and message the API would give.
 */
import { invalidParameter } from '../errors';
import { allowedModel, type ModelLookup, type ModelSelection } from '../model/selection';
import type { RemovalOptions } from '../pipeline/options';
import type { OutputFormat } from '../pipeline/types';
import { parseRemovalOptions } from './options';
import { checkParameterNames, PARAMETERS, type ParameterName, parameterTable, queryStringParameters, type RequestParameters } from './parameters';
import { type ResolvedOptions, resolveOptions } from './removalRequest';

/** Custom metadata keys that carry a parameter: `detourage-` and its name. */
export const METADATA_PREFIX = 'detourage-';

/**
 * An output's name is made before its removal runs, to find an earlier
 * delivery's output, so its format must be known then. `auto` (the API's
 * default) picks PNG or JPEG by the result's pixels, so a bucket defaults to PNG,
 * which `auto` gives every cutout with transparency.
 */
const DEFAULT_FORMAT = 'png';

/** The object is its own image: a source parameter (a file, base64, a URL to fetch) has nothing to carry here. */
function checkValueParameters(names: readonly string[], where: string): void {
  checkParameterNames(names);
  for (const name of names) {
    if (PARAMETERS[name as ParameterName].kind !== 'value') {
      throw invalidParameter(name, `${name} gives an image, which ${where} cannot: the object itself is the image, and only value parameters apply.`);
    }
  }
}

function namedFormat(options: RemovalOptions): OutputFormat {
  const { format } = options.encode;
  if (format === 'auto') {
    throw invalidParameter('format', "format=auto picks the format from the result, but an output's name is made before it: use png, jpg, webp or zip.");
  }
  return format;
}

/** STORAGE_OPTIONS, checked, and the format of the outputs of objects that name none. */
export interface StorageParameters {
  parameters: RequestParameters;
  format: OutputFormat;
}

/**
 * STORAGE_OPTIONS read and checked, at start: each name known and a value
 * parameter, each value as the API parses it, the model allowed (its weights
 * are checked per object, as per request). The default format is put in.
 */
export function storageParameters(text: string, selection: ModelSelection): StorageParameters {
  const parameters = { format: DEFAULT_FORMAT, ...queryStringParameters(text, 'STORAGE_OPTIONS') };
  checkValueParameters(Object.keys(parameters), 'STORAGE_OPTIONS');
  const options = parseRemovalOptions(parameters);
  allowedModel(selection, options.model);
  return { parameters: Object.freeze(parameters), format: namedFormat(options) };
}

/** The parameters an object's custom metadata gives, by their `detourage-` keys; its other keys are not ours. */
export function metadataParameters(metadata: Readonly<Record<string, string>>): Record<string, string> {
  const parameters = parameterTable();
  for (const [key, value] of Object.entries(metadata)) {
    if (key.toLowerCase().startsWith(METADATA_PREFIX)) parameters[key.slice(METADATA_PREFIX.length).toLowerCase()] = value;
  }
  return parameters;
}

/** One object's options: its metadata's parameters over STORAGE_OPTIONS', then the model, whose weights must be in place. */
export function objectOptions(base: RequestParameters, metadata: Readonly<Record<string, string>>, settings: ModelLookup): ResolvedOptions & { format: OutputFormat } {
  const own = metadataParameters(metadata);
  checkValueParameters(Object.keys(own), "an object's metadata");
  const resolved = resolveOptions({ ...base, ...own }, settings);
  return { ...resolved, format: namedFormat(resolved.options) };
}
