import busboy from 'busboy';
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError } from '../errors';

/** Field names that may carry the image in a multipart upload. */
export const IMAGE_FIELDS: readonly string[] = ['image', 'file', 'image_file'];

export interface Upload {
  image: Buffer;
  /** Plain (non-file) multipart fields; empty for a raw body. */
  fields: Record<string, string>;
}

export interface UploadLimits {
  maxUploadBytes: number;
}

export interface RawRequest {
  headers: IncomingHttpHeaders;
  /** The functions framework has already read the body into this buffer. */
  rawBody?: Buffer;
}

const MAX_FIELDS = 50;
const MAX_FILES = 5;
const MAX_FIELD_BYTES = 64 * 1024;

function tooLarge(limits: UploadLimits): ApiError {
  return new ApiError('payload_too_large', `The upload is larger than ${limits.maxUploadBytes} bytes.`);
}

function missingImage(): ApiError {
  return new ApiError(
    'missing_image',
    `No image in the request: send a multipart file field (${IMAGE_FIELDS.join(', ')}) or a raw image/* body.`,
  );
}

function parseMultipart(request: RawRequest, body: Buffer, limits: UploadLimits): Promise<Upload> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: request.headers,
        limits: { fileSize: limits.maxUploadBytes, files: MAX_FILES, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES },
      });
    } catch (error) {
      reject(new ApiError('bad_request', `Malformed multipart request: ${(error as Error).message}.`, { cause: error }));
      return;
    }
    const fields: Record<string, string> = {};
    let image: Buffer | null = null;
    let failure: ApiError | null = null;
    const fail = (error: ApiError): void => {
      failure ??= error;
    };

    parser.on('file', (name, stream) => {
      // A truncated body errors the file stream too; unhandled, that would crash the process.
      stream.on('error', (error: Error) => fail(new ApiError('bad_request', `Malformed multipart body: ${error.message}.`)));
      if (image !== null || !IMAGE_FIELDS.includes(name)) {
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => fail(tooLarge(limits)));
      stream.on('end', () => {
        image = Buffer.concat(chunks);
      });
    });
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) fail(new ApiError('invalid_parameter', `The field ${name} is longer than ${MAX_FIELD_BYTES} bytes.`));
      fields[name] = value;
    });
    const tooMany = (what: string) => () => fail(new ApiError('bad_request', `The multipart body has too many ${what}.`));
    parser.on('filesLimit', tooMany('files'));
    parser.on('fieldsLimit', tooMany('fields'));
    parser.on('error', (error: Error) => {
      reject(failure ?? new ApiError('bad_request', `Malformed multipart body: ${error.message}.`, { cause: error }));
    });
    parser.on('close', () => {
      if (failure) reject(failure);
      else if (image === null || image.length === 0) reject(missingImage());
      else resolve({ image, fields });
    });
    parser.end(body);
  });
}

/** Takes the image out of a multipart form or a raw image body. */
export async function readUpload(request: RawRequest, limits: UploadLimits): Promise<Upload> {
  const body = request.rawBody ?? Buffer.alloc(0);
  // Multipart framing adds a little; the image itself is held to the exact limit below.
  if (body.length > limits.maxUploadBytes + 64 * 1024) throw tooLarge(limits);
  const contentType = (request.headers['content-type'] ?? '').toLowerCase();
  const mediaType = contentType.split(';', 1)[0]!.trim();

  if (mediaType === 'multipart/form-data') return parseMultipart(request, body, limits);
  if (mediaType.startsWith('image/') || mediaType === 'application/octet-stream') {
    if (body.length === 0) throw missingImage();
    if (body.length > limits.maxUploadBytes) throw tooLarge(limits);
    return { image: body, fields: {} };
  }
  // The functions framework does not read a body that has no Content-Type, so only the header tells it was sent.
  if (body.length === 0 && !(Number(request.headers['content-length']) > 0)) throw missingImage();
  throw new ApiError(
    'unsupported_media_type',
    `Content-Type ${mediaType || '(none)'} is not accepted: use multipart/form-data, image/* or application/octet-stream.`,
  );
}
