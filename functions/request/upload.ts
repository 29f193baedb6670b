import busboy from 'busboy';
import type { IncomingHttpHeaders } from 'node:http';
import { ApiError, invalidParameter, payloadTooLarge } from '../errors';
import { checkFormFieldCount, decodeName, notAnObject, notScalar, scanJsonObject, tooManyFields } from './fieldScan';
import { type FileParameter, fileFieldsOf, fileParameterOfField, parameterTable, parametersOfKind, repeatedParameter } from './parameters';

export interface RequestBody {
  /** Uploaded files by parameter name (a multipart field may use one of the parameter's aliases; a raw image body is `image_file`). */
  files: Partial<Record<FileParameter, Buffer>>;
  /** Every other parameter in the body: multipart fields, form fields or JSON members. */
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

/** What an unexpected file field should have been. */
const FILE_FIELDS_HINT = `send the image as ${fileFieldsOf('image')[0]} and a background as ${parametersOfKind('file', 'background').join(' or ')}`;

/** Fields in one body, whatever its kind: far more than any request needs. */
const MAX_FIELDS = 50;
const MAX_FILES = 5;
/** Room for `image_file_b64` in a field: base64 is 4/3 of the bytes. */
function maxFieldBytes(limits: UploadLimits): number {
  return Math.ceil((limits.maxUploadBytes * 4) / 3) + 1024;
}

function fieldTooLong(name: string, limits: UploadLimits): ApiError {
  return invalidParameter(name, `The field ${name} is longer than ${maxFieldBytes(limits)} bytes.`);
}

function tooLarge(limits: UploadLimits): ApiError {
  return payloadTooLarge('The upload', limits.maxUploadBytes);
}

function parseMultipart(request: RawRequest, body: Buffer, limits: UploadLimits): Promise<RequestBody> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: request.headers,
        limits: { fileSize: limits.maxUploadBytes, files: MAX_FILES, fields: MAX_FIELDS, fieldSize: maxFieldBytes(limits) },
      });
    } catch (error) {
      reject(new ApiError('bad_request', `Malformed multipart request: ${(error as Error).message}.`, { cause: error }));
      return;
    }
    const fields = parameterTable();
    const files: RequestBody['files'] = {};
    let failure: ApiError | null = null;
    const fail = (error: ApiError): void => {
      failure ??= error;
    };

    // The field each file came in, so a second one for the same slot can be named with the first.
    const fileFields: Partial<Record<keyof RequestBody['files'], string>> = {};

    parser.on('file', (name, stream) => {
      // A truncated body errors the file stream too; unhandled, that would crash the process.
      stream.on('error', (error: Error) => fail(new ApiError('bad_request', `Malformed multipart body: ${error.message}.`)));
      const key = fileParameterOfField(name);
      const earlier = key === undefined ? undefined : fileFields[key];
      if (key === undefined) {
        fail(invalidParameter(name, `Unexpected file field ${JSON.stringify(name)}: ${FILE_FIELDS_HINT}.`));
      } else if (earlier === name) {
        fail(repeatedParameter(name, 'multipart body'));
      } else if (earlier !== undefined) {
        fail(invalidParameter(name, `The image is given twice in the multipart body, as ${earlier} and ${name}: send one.`));
      }
      if (key === undefined || earlier !== undefined) {
        stream.resume();
        return;
      }
      fileFields[key] = name;
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('limit', () => fail(tooLarge(limits)));
      stream.on('end', () => {
        files[key] = Buffer.concat(chunks);
      });
    });
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) fail(fieldTooLong(name, limits));
      if (Object.hasOwn(fields, name)) fail(repeatedParameter(name, 'multipart body'));
      fields[name] = value;
    });
    // The body's shape is the first thing wrong with it, whatever its parts were called.
    parser.on('filesLimit', () => {
      failure = new ApiError('bad_request', `The multipart body has too many files: at most ${MAX_FILES}.`);
    });
    parser.on('fieldsLimit', () => {
      failure = tooManyFields('multipart body', MAX_FIELDS);
    });
    parser.on('error', (error: Error) => {
      reject(failure ?? new ApiError('bad_request', `Malformed multipart body: ${error.message}.`, { cause: error }));
    });
    parser.on('close', () => {
      if (failure) reject(failure);
      else resolve({ files, fields });
    });
    parser.end(body);
  });
}

/** A field the form or JSON parser produced, under the multipart rules. */
function addField(fields: Record<string, string>, name: string, value: string, where: string, limits: UploadLimits): void {
  if (Object.hasOwn(fields, name)) throw repeatedParameter(name, where);
  if (value.length > maxFieldBytes(limits)) throw fieldTooLong(name, limits);
  fields[name] = value;
}

function parseFormFields(body: Buffer, limits: UploadLimits): Record<string, string> {
  checkFormFieldCount(body, MAX_FIELDS);
  const fields = parameterTable();
  for (const [name, value] of new URLSearchParams(body.toString('utf8'))) addField(fields, name, value, 'form body', limits);
  return fields;
}

/** JSON members become parameters as text, as if they had come in a form. */
function parseJsonFields(body: Buffer, limits: UploadLimits): Record<string, string> {
  const names = scanJsonObject(body, MAX_FIELDS);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new ApiError('bad_request', `The JSON body could not be parsed: ${(error as Error).message}.`, { cause: error });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw notAnObject();
  const members = Object.entries(parsed as Record<string, unknown>);
  // JSON.parse keeps the last of two equal names; the scan saw both.
  if (members.length < names.length) {
    const seen = new Set<string>();
    for (const range of names) {
      const name = decodeName(body, range);
      if (name === null) continue;
      if (seen.has(name)) throw repeatedParameter(name, 'JSON body');
      seen.add(name);
    }
  }
  const fields = parameterTable();
  for (const [name, value] of members) {
    if (value === null) continue;
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') throw notScalar(name);
    addField(fields, name, String(value), 'JSON body', limits);
  }
  return fields;
}

/**
 * Reads a removal request's body: multipart, a URL-encoded form, JSON, or the
 * raw image itself. An empty body is fine: the image may be an image_url in
 * the query string.
 */
export async function readRequestBody(request: RawRequest, limits: UploadLimits): Promise<RequestBody> {
  const body = request.rawBody ?? Buffer.alloc(0);
  // Multipart framing and base64 add up to a third; the image itself is held to the exact limit later.
  if (body.length > maxFieldBytes(limits) + 64 * 1024) throw tooLarge(limits);
  const contentType = (request.headers['content-type'] ?? '').toLowerCase();
  const mediaType = contentType.split(';', 1)[0]!.trim();

  if (mediaType === 'multipart/form-data') return parseMultipart(request, body, limits);
  if (mediaType === 'application/x-www-form-urlencoded') return { files: {}, fields: parseFormFields(body, limits) };
  if (mediaType === 'application/json' || mediaType.endsWith('+json')) {
    return { files: {}, fields: body.length === 0 ? {} : parseJsonFields(body, limits) };
  }
  // The functions framework does not read a body that has no Content-Type, so only the header tells it was sent.
  const bodySent = body.length > 0 || Number(request.headers['content-length']) > 0;
  if (!bodySent) return { files: {}, fields: {} };
  if (mediaType.startsWith('image/') || mediaType === 'application/octet-stream') {
    if (body.length > limits.maxUploadBytes) throw tooLarge(limits);
    return { files: { image_file: body }, fields: {} };
  }
  throw new ApiError(
    'unsupported_media_type',
    `Content-Type ${mediaType || '(none)'} is not accepted: use multipart/form-data, application/x-www-form-urlencoded, application/json, image/* or application/octet-stream.`,
  );
}
