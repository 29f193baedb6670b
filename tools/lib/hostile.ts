/**
 * Hostile uploads with the answer each must get. Shared by test/hostile.test.ts
 * (one by one, with checks around them) and `npm run load` (mixed into load).
 */
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import type { ErrorCode } from '../../functions/errors';
import type { Expectation } from './answers';
import { multipartBody } from './http';
import { fixture, pngChunk, pngClaimingSize } from './images';

export type HostileGroup = 'size' | 'animation' | 'metadata' | 'multipart' | 'framing' | 'polyglot' | 'svg';

export interface HostileCase {
  name: string;
  /** Cases of the `multipart` and `framing` groups are refused before any image is read. */
  group: HostileGroup;
  body: Buffer;
  /** Undefined sends no Content-Type header at all. */
  contentType: string | undefined;
  expected: Expectation;
}

const PNG_SIGNATURE_AND_IHDR = 8 + 25;

/**
 * A GIF of `frames` 1×1 frames on a 16×16 canvas, written by hand: sharp
 * would merge or slowly encode thousands of frames.
 */
export function animatedGif(frames: number): Buffer {
  const side = 16;
  const pieces = [
    Buffer.from('GIF89a'),
    // Logical screen side×side with a two-colour global palette.
    Buffer.from([side, 0, side, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255]),
    Buffer.concat([Buffer.from([0x21, 0xff, 0x0b]), Buffer.from('NETSCAPE2.0'), Buffer.from([3, 1, 0, 0, 0])]),
  ];
  for (let frame = 0; frame < frames; frame += 1) {
    const x = frame % side;
    const y = Math.floor(frame / side) % side;
    // Graphic control (10 ms), then a 1×1 frame at (x, y) holding colour 0 in LZW.
    pieces.push(Buffer.from([0x21, 0xf9, 4, 0, 1, 0, 0, 0, 0x2c, x, 0, y, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0]));
  }
  pieces.push(Buffer.from([0x3b]));
  return Buffer.concat(pieces);
}

async function animatedWebp(frames: number): Promise<Buffer> {
  const side = 8;
  const pixels = Buffer.alloc(side * side * 3 * frames);
  // Every frame different, or the encoder merges them.
  for (let index = 0; index < pixels.length; index += 1) pixels[index] = (index * 2654435761) >>> 24;
  return sharp(pixels, { raw: { width: side, height: side * frames, channels: 3, pageHeight: side } })
    .webp({ effort: 0 })
    .toBuffer();
}

/** A small PNG with one ancillary chunk of `bytes` inserted after IHDR. */
async function pngWithChunk(type: string, data: Buffer): Promise<Buffer> {
  const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#803020' } }).png().toBuffer();
  return Buffer.concat([png.subarray(0, PNG_SIGNATURE_AND_IHDR), pngChunk(type, data), png.subarray(PNG_SIGNATURE_AND_IHDR)]);
}

/** A small JPEG carrying a full 64 KB EXIF segment and 200 segments (13 MB) of bogus ICC profile. */
async function jpegWithHugeMetadata(): Promise<Buffer> {
  const jpeg = await sharp({ create: { width: 64, height: 48, channels: 3, background: '#803020' } }).jpeg().toBuffer();
  const segment = (marker: number, payload: Buffer): Buffer => {
    const header = Buffer.from([0xff, marker, 0, 0]);
    header.writeUInt16BE(payload.length + 2, 2);
    return Buffer.concat([header, payload]);
  };
  const exif = segment(0xe1, Buffer.concat([Buffer.from('Exif\0\0MM\0*\0\0\0\x08', 'latin1'), Buffer.alloc(65_000, 0xff)]));
  const icc = Array.from({ length: 200 }, (_, index) =>
    segment(0xe2, Buffer.concat([Buffer.from('ICC_PROFILE\0', 'latin1'), Buffer.from([index + 1, 200]), Buffer.alloc(65_000, index)])),
  );
  return Buffer.concat([jpeg.subarray(0, 2), exif, ...icc, jpeg.subarray(2)]);
}

/**
 * The classic GIF/JavaScript polyglot: the logical-screen width bytes are
 * "/\*", and the bytes after the trailer close the comment and run code.
 */
export function gifJavascriptPolyglot(): Buffer {
  return Buffer.concat([
    Buffer.from('GIF89a/*', 'latin1'),
    Buffer.from([0x0a, 0x00, 0x80, 0, 0, 0, 0, 0, 255, 255, 255, 0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3b]),
    Buffer.from('*/=1;alert(document.domain);//'),
  ]);
}

export const POLYGLOT_TAIL = Buffer.from('PK\x03\x04\x14\0\0\0<html><script>alert("polyglot")</script></html>', 'latin1');

/** SVG that would make a renderer read a file and call `probeUrl` if it ever rendered it. */
export function svgWithExternalReferences(probeUrl: string): Buffer {
  return Buffer.from(
    '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">' +
      '<image href="file:///etc/passwd" width="64" height="64"/>' +
      `<image xlink:href="${probeUrl}/x.png" width="64" height="64"/>` +
      `<image href="${probeUrl}/y.svg" width="64" height="64"/>` +
      '</svg>',
  );
}

function refused(status: number, code: ErrorCode): Expectation {
  return { error: { status, code } };
}

export interface HostileOptions {
  /** Where SVG references point; a listener there should never be hit. */
  probeUrl: string;
}

export async function hostileCases(options: HostileOptions): Promise<HostileCase[]> {
  const car = fixture('car-1.jpg');
  const carSize = { width: 480, height: 360 };
  const form = (parts: Parameters<typeof multipartBody>[0]): { body: Buffer; contentType: string } => multipartBody(parts);
  const validForm = form([{ name: 'image', filename: 'car.jpg', data: car }]);
  const svg = svgWithExternalReferences(options.probeUrl);
  return [
    { name: 'PNG bomb 50000x50000', group: 'size', body: pngClaimingSize(50_000, 50_000), contentType: 'image/png', expected: refused(413, 'image_too_large') },
    { name: 'GIF with 5000 frames', group: 'animation', body: animatedGif(5000), contentType: 'image/gif', expected: { image: { width: 16, height: 16 } } },
    { name: 'WebP with 3000 frames', group: 'animation', body: await animatedWebp(3000), contentType: 'image/webp', expected: { image: { width: 8, height: 8 } } },
    {
      name: 'PNG with an 8 MB text chunk', group: 'metadata',
      body: await pngWithChunk('tEXt', Buffer.concat([Buffer.from('Comment\0'), Buffer.alloc(8_000_000, 'A')])),
      contentType: 'image/png',
      expected: { image: { width: 64, height: 48 } },
    },
    {
      name: 'PNG with a 50 MB zlib-bomb ICC profile', group: 'metadata',
      body: await pngWithChunk('iCCP', Buffer.concat([Buffer.from('x\0\0'), deflateSync(Buffer.alloc(50_000_000, 7))])),
      contentType: 'image/png',
      expected: { image: { width: 64, height: 48 } },
    },
    { name: 'JPEG with 13 MB of EXIF and ICC', group: 'metadata', body: await jpegWithHugeMetadata(), contentType: 'image/jpeg', expected: { image: { width: 64, height: 48 } } },
    {
      name: 'truncated multipart', group: 'multipart',
      body: validForm.body.subarray(0, validForm.body.length / 2),
      contentType: validForm.contentType,
      expected: refused(400, 'bad_request'),
    },
    {
      name: 'multipart with framing that never matches its boundary', group: 'multipart',
      body: Buffer.from(validForm.body.toString('latin1').replaceAll('--detourage-test-boundary', '--other'), 'latin1'),
      contentType: validForm.contentType,
      expected: refused(400, 'bad_request'),
    },
    { name: 'multipart without a boundary', group: 'multipart', body: validForm.body, contentType: 'multipart/form-data', expected: refused(400, 'bad_request') },
    {
      name: 'multipart with 1000 fields', group: 'multipart',
      ...form([...Array.from({ length: 1000 }, (_, index) => ({ name: `f${index}`, data: 'x' })), { name: 'image', filename: 'car.jpg', data: car }]),
      expected: refused(400, 'bad_request'),
    },
    {
      name: 'multipart with 100 file parts', group: 'multipart',
      ...form(Array.from({ length: 100 }, (_, index) => ({ name: `image${index}`, filename: 'x.jpg', data: 'x' }))),
      expected: refused(400, 'bad_request'),
    },
    { name: 'an image sent as text/plain', group: 'framing', body: car, contentType: 'text/plain', expected: refused(415, 'unsupported_media_type') },
    { name: 'an image with no Content-Type', group: 'framing', body: car, contentType: undefined, expected: refused(415, 'unsupported_media_type') },
    { name: 'zero bytes', group: 'framing', body: Buffer.alloc(0), contentType: 'image/jpeg', expected: refused(400, 'missing_image') },
    {
      name: 'a body of 30 MB', group: 'framing',
      body: Buffer.alloc(30_000_000, 0xff),
      contentType: 'image/jpeg',
      // Over the default MAX_UPLOAD_BYTES (20 MiB), under the platform's 32 MB.
      expected: refused(413, 'payload_too_large'),
    },
    { name: 'JPEG with a ZIP/HTML tail', group: 'polyglot', body: Buffer.concat([car, POLYGLOT_TAIL]), contentType: 'image/jpeg', expected: { image: carSize } },
    // libnsgif decodes the one 1×1 frame, not the 10799×10 screen the "/*" bytes claim.
    { name: 'GIF/JavaScript polyglot', group: 'polyglot', body: gifJavascriptPolyglot(), contentType: 'image/gif', expected: { image: { width: 1, height: 1 } } },
    { name: 'HTML followed by a PNG', group: 'polyglot', body: Buffer.concat([Buffer.from('<html>'), car]), contentType: 'image/png', expected: refused(415, 'unsupported_media_type') },
    { name: 'SVG with external references', group: 'svg', body: svg, contentType: 'image/svg+xml', expected: refused(415, 'unsupported_media_type') },
    { name: 'SVG sent as image/png', group: 'svg', body: svg, contentType: 'image/png', expected: refused(415, 'unsupported_media_type') },
    { name: 'SVG in a multipart form', group: 'svg', ...form([{ name: 'image', filename: 'x.svg', data: svg }]), expected: refused(415, 'unsupported_media_type') },
  ];
}
