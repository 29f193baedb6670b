/**
 * What counts as a proper answer from /remove-background, shared by the
 * hostile and fuzz tests and by the load tool: a PNG cutout of the right size,
 * or a documented JSON error. Anything else is a finding.
 */
import sharp, { type OutputInfo } from 'sharp';
import { type ErrorCode, STATUS_BY_CODE } from '../../functions/errors';

export interface Answer {
  status: number;
  headers: Headers;
  body: Buffer;
}

export type Expectation =
  /** A cutout at this size (the default format, PNG). */
  | { image: { width: number; height: number } }
  | { error: { status: number; code: ErrorCode } }
  /** Fuzzed input: either outcome is fine as long as it is a proper one. */
  | { anything: true };

/** 503 is the documented "retry later" (overload, model unavailable); 504 the deadline. */
const DOCUMENTED_SERVER_ERRORS = new Set([503, 504]);

export async function receive(response: Response): Promise<Answer> {
  return { status: response.status, headers: response.headers, body: Buffer.from(await response.arrayBuffer()) };
}

/** Null when the answer is proper for the expectation, else why it is not. */
export async function judgeAnswer(answer: Answer, expected: Expectation): Promise<string | null> {
  if (answer.status === 200) {
    if ('error' in expected) return `200 where ${expected.error.status} ${expected.error.code} was expected`;
    return judgeCutout(answer, 'image' in expected ? expected.image : null);
  }
  const problem = judgeErrorBody(answer);
  if (problem) return problem;
  // Overload and deadlines can hit any request, hostile or not.
  if (DOCUMENTED_SERVER_ERRORS.has(answer.status)) return null;
  if ('image' in expected) return `${answer.status} where an image was expected: ${answer.body.toString().slice(0, 200)}`;
  if ('error' in expected) {
    const { code } = (JSON.parse(answer.body.toString()) as { error: { code: string } }).error;
    if (answer.status !== expected.error.status || code !== expected.error.code) {
      return `${answer.status} ${code} where ${expected.error.status} ${expected.error.code} was expected`;
    }
  }
  return null;
}

function judgeErrorBody(answer: Answer): string | null {
  const text = answer.body.toString();
  if (!/^application\/json/.test(answer.headers.get('content-type') ?? '')) return `${answer.status} without a JSON body: ${text.slice(0, 200)}`;
  let code: unknown;
  let message: unknown;
  try {
    ({ code, message } = (JSON.parse(text) as { error: { code: unknown; message: unknown } }).error);
  } catch {
    return `${answer.status} with a body that is not {error:{code,message}}: ${text.slice(0, 200)}`;
  }
  if (typeof code !== 'string' || !(code in STATUS_BY_CODE) || typeof message !== 'string' || message === '') {
    return `${answer.status} with an undocumented error body: ${text.slice(0, 200)}`;
  }
  if (STATUS_BY_CODE[code as ErrorCode] !== answer.status) return `${answer.status} carries code ${code}, which is documented as ${STATUS_BY_CODE[code as ErrorCode]}`;
  if (answer.status >= 500 && !DOCUMENTED_SERVER_ERRORS.has(answer.status)) return `${answer.status} ${code}: ${message}`;
  if (answer.status === 503 && !answer.headers.has('retry-after')) return `503 ${code} without Retry-After`;
  if (/\n\s+at |\.ts:\d|\.js:\d/.test(text)) return `${answer.status} leaks a stack trace`;
  return null;
}

async function judgeCutout(answer: Answer, size: { width: number; height: number } | null): Promise<string | null> {
  if (answer.headers.get('content-type') !== 'image/png') return `200 with Content-Type ${answer.headers.get('content-type')}`;
  let info: OutputInfo;
  try {
    ({ info } = await sharp(answer.body).raw().toBuffer({ resolveWithObject: true }));
  } catch (error) {
    return `200 with a PNG that does not decode: ${(error as Error).message}`;
  }
  const claimed = [Number(answer.headers.get('x-width')), Number(answer.headers.get('x-height'))];
  if (info.width !== claimed[0] || info.height !== claimed[1]) return `200 ${info.width}x${info.height} but X-Width/X-Height say ${claimed.join('x')}`;
  if (size && (info.width !== size.width || info.height !== size.height)) return `200 ${info.width}x${info.height} where ${size.width}x${size.height} was expected`;
  if (info.channels !== 4) return `200 cutout with ${info.channels} channels`;
  return null;
}
