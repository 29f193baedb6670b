import { ApiError, payloadTooLarge } from '../errors';
import { fetchImageUrl } from './fetchUrl';
import { IMAGE_FIELDS, type RequestBody } from './upload';
import type { RequestParameters } from './options';

export interface SourceSettings {
  maxUploadBytes: number;
  urlFetchTimeoutMs: number;
  allowLoopbackUrlsForTests: boolean;
}

export interface RequestImages {
  image: Buffer;
  backgroundImage: Buffer | null;
}

type Source = { kind: 'bytes'; bytes: Buffer } | { kind: 'base64'; text: string } | { kind: 'url'; url: string };

const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/;

/** Accepts plain or URL-safe base64, with or without a `data:image/...;base64,` prefix and line breaks. */
function decodeBase64(text: string, maxBytes: number): Buffer {
  const payload = text.replace(/^data:[^,]*;base64,/i, '').replace(/\s+/g, '');
  if (payload === '' || !BASE64.test(payload) || payload.length % 4 === 1) {
    throw new ApiError('invalid_parameter', 'image_file_b64 is not valid base64.');
  }
  if (Math.floor((payload.length * 3) / 4) > maxBytes + 2) throw payloadTooLarge('image_file_b64', maxBytes);
  return Buffer.from(payload, 'base64');
}

/** The one source a slot was given, refusing none or several. */
function pickSource(
  slot: string,
  candidates: ReadonlyArray<readonly [string, Source | null]>,
  required: boolean,
): readonly [string, Source] | null {
  const given = candidates.filter((candidate): candidate is readonly [string, Source] => candidate[1] !== null);
  if (given.length > 1) {
    throw new ApiError('invalid_parameter', `Give only one ${slot}; this request has ${given.map(([name]) => name).join(' and ')}.`);
  }
  if (given.length === 0 && required) {
    throw new ApiError(
      'missing_image',
      `No image in the request: send a multipart file (${IMAGE_FIELDS.join(', ')}), a raw image/* body, image_file_b64 or image_url.`,
    );
  }
  return given[0] ?? null;
}

function text(parameters: RequestParameters, name: string): string | null {
  const value = parameters[name]?.trim();
  return value ? value : null;
}

async function readSource(name: string, source: Source, settings: SourceSettings, signal?: AbortSignal): Promise<Buffer> {
  switch (source.kind) {
    case 'bytes':
      if (source.bytes.length === 0) throw new ApiError('missing_image', `${name} is empty.`);
      if (source.bytes.length > settings.maxUploadBytes) throw payloadTooLarge(name, settings.maxUploadBytes);
      return source.bytes;
    case 'base64':
      return decodeBase64(source.text, settings.maxUploadBytes);
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
  return text(parameters, 'image_url') !== null || text(parameters, 'bg_image_url') !== null;
}

/**
 * Finds the image and the optional background image wherever the request put
 * them, and reads them: uploaded bytes, base64, or a URL fetched under the
 * SSRF rules of fetchUrl.ts.
 */
export async function readRequestImages(
  body: RequestBody,
  parameters: RequestParameters,
  settings: SourceSettings,
  signal?: AbortSignal,
): Promise<RequestImages> {
  for (const name of ['image_file', 'bg_image_file']) {
    if (parameters[name] !== undefined) throw new ApiError('invalid_parameter', `${name} must be a file upload, not a text field.`);
  }
  const imageUrl = text(parameters, 'image_url');
  const imageBase64 = text(parameters, 'image_file_b64');
  const [imageName, imageSource] = pickSource(
    'image',
    [
      ['image_file', body.files.image_file ? { kind: 'bytes', bytes: body.files.image_file } : null],
      ['image_file_b64', imageBase64 === null ? null : { kind: 'base64', text: imageBase64 }],
      ['image_url', imageUrl === null ? null : { kind: 'url', url: imageUrl }],
    ],
    true,
  )!;
  const backgroundUrl = text(parameters, 'bg_image_url');
  const background = pickSource(
    'background image',
    [
      ['bg_image_file', body.files.bg_image_file ? { kind: 'bytes', bytes: body.files.bg_image_file } : null],
      ['bg_image_url', backgroundUrl === null ? null : { kind: 'url', url: backgroundUrl }],
    ],
    false,
  );
  if (background && text(parameters, 'bg_color') !== null) {
    throw new ApiError('invalid_parameter', `Give either bg_color or ${background[0]}, not both.`);
  }
  const [image, backgroundImage] = await Promise.all([
    readSource(imageName, imageSource, settings, signal),
    background ? readSource(background[0], background[1], settings, signal) : null,
  ]);
  return { image, backgroundImage };
}
