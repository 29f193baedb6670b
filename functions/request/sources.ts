import { ApiError, invalidParameter, payloadTooLarge } from '../errors';
import { fetchImageUrl } from './fetchUrl';
import { fileFieldsOf, type ImageSlot, PARAMETERS, parameterText, parametersOfKind, type RequestParameters } from './parameters';
import type { RequestBody } from './upload';

export interface SourceSettings {
  maxUploadBytes: number;
  urlFetchTimeoutMs: number;
  allowLoopbackUrlsForTests: boolean;
}

export interface RequestImages {
  image: Buffer;
  backgroundImage: Buffer | null;
}

type Source = { kind: 'file'; bytes: Buffer } | { kind: 'base64'; text: string } | { kind: 'url'; url: string };

/** A source and the parameter it came in, which errors name. */
type NamedSource = readonly [name: string, source: Source];

export interface ImageSources {
  image: NamedSource;
  background: NamedSource | null;
}

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Accepts plain or URL-safe base64, with or without a `data:image/...;base64,` prefix and line breaks. */
function decodeBase64(name: string, text: string, maxBytes: number): Buffer {
  const payload = text.replace(/^data:[^,]*;base64,/i, '').replace(/\s+/g, '');
  if (payload === '' || !BASE64.test(payload) || payload.length % 4 === 1) throw invalidParameter(name, `${name} is not valid base64.`);
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) throw payloadTooLarge(name, maxBytes);
  return Buffer.from(payload, 'base64');
}

/** What the request gave for one source parameter, or null. */
function sourceOf(name: keyof typeof PARAMETERS, body: RequestBody, parameters: RequestParameters): Source | null {
  const entry = PARAMETERS[name];
  if (entry.kind === 'file') {
    if (parameters[name] !== undefined) throw invalidParameter(name, `${name} must be a file upload, not a text field.`);
    const bytes = body.files[name as keyof RequestBody['files']];
    return bytes ? { kind: 'file', bytes } : null;
  }
  const text = parameterText(parameters, name);
  if (text === undefined) return null;
  return entry.kind === 'url' ? { kind: 'url', url: text } : { kind: 'base64', text };
}

const SLOT_NAMES: Readonly<Record<ImageSlot, string>> = { image: 'image', background: 'background image' };

/** Each slot's source parameters, files first: fixed by the table, so worked out once. */
const SOURCES_OF: Readonly<Record<ImageSlot, readonly (keyof typeof PARAMETERS)[]>> = {
  image: [...parametersOfKind('file', 'image'), ...parametersOfKind('base64', 'image'), ...parametersOfKind('url', 'image')],
  background: [...parametersOfKind('file', 'background'), ...parametersOfKind('base64', 'background'), ...parametersOfKind('url', 'background')],
};

/** The one source a slot was given, refusing several; null when none. */
function pickSource(slot: ImageSlot, body: RequestBody, parameters: RequestParameters): NamedSource | null {
  const given = SOURCES_OF[slot].flatMap((name) => {
    const source = sourceOf(name, body, parameters);
    return source ? [[name, source] as const] : [];
  });
  if (given.length > 1) {
    throw invalidParameter(given[1]![0], `Give only one ${SLOT_NAMES[slot]}; this request has ${given.map(([name]) => name).join(' and ')}.`);
  }
  return given[0] ?? null;
}

function noImage(): ApiError {
  const others = [...parametersOfKind('base64', 'image'), ...parametersOfKind('url', 'image')];
  return new ApiError(
    'missing_image',
    `No image in the request: send a multipart file (${fileFieldsOf('image').join(', ')}), a raw image/* body, ${others.join(' or ')}.`,
  );
}

async function readSource(name: string, source: Source, settings: SourceSettings, signal?: AbortSignal): Promise<Buffer> {
  switch (source.kind) {
    case 'file':
      if (source.bytes.length === 0) throw new ApiError('missing_image', `${name} is empty.`);
      if (source.bytes.length > settings.maxUploadBytes) throw payloadTooLarge(name, settings.maxUploadBytes);
      return source.bytes;
    case 'base64':
      return decodeBase64(name, source.text, settings.maxUploadBytes);
    case 'url':
      return fetchImageUrl(source.url, {
        parameterName: name,
        maxBytes: settings.maxUploadBytes,
        timeoutMs: settings.urlFetchTimeoutMs,
        signal,
        allowLoopbackForTests: settings.allowLoopbackUrlsForTests,
      });
  }
}

/** Whether reading the request's images means fetching a URL, which admission bounds on its own. */
export function fetchesUrl(parameters: RequestParameters): boolean {
  return parametersOfKind('url').some((name) => parameterText(parameters, name) !== undefined);
}

/** The request's image sources, checked: exactly one image, at most one background, and not both a background and bg_color. */
export function pickImageSources(body: RequestBody, parameters: RequestParameters): ImageSources {
  const image = pickSource('image', body, parameters);
  if (!image) throw noImage();
  const background = pickSource('background', body, parameters);
  if (background && parameterText(parameters, 'bg_color') !== undefined) {
    throw invalidParameter(background[0], `Give either bg_color or ${background[0]}, not both.`);
  }
  return { image, background };
}

/**
 * Reads the image and the optional background image from wherever the
 * request put them: uploaded bytes, base64, or a URL fetched under the SSRF
 * rules of fetchUrl.ts.
 */
export async function readImageSources(
  sources: ImageSources,
  settings: SourceSettings,
  signal?: AbortSignal,
): Promise<RequestImages> {
  const { image, background } = sources;
  const [imageBytes, backgroundImage] = await Promise.all([
    readSource(image[0], image[1], settings, signal),
    background ? readSource(background[0], background[1], settings, signal) : null,
  ]);
  return { image: imageBytes, backgroundImage };
}
