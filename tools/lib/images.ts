import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../../functions/paths';

/** A test image; the fixtures are data beside the tests that use them most, read from disk, never imported. */
export function fixture(name: string): Buffer {
  return readFileSync(path.join(PROJECT_ROOT, 'test', 'fixtures', name));
}

/** The size of smallSubjectPhoto's frame. */
export const SMALL_SUBJECT_FRAME = { width: 1200, height: 900 } as const;

/**
 * rembg's cutout of the anime girl at 30% of her size on a flat 1200x900
 * frame: her box covers about a tenth of it, the case `quality=auto`'s
 * zoomed pass is for.
 */
export async function smallSubjectPhoto(): Promise<Buffer> {
  const cutout = await sharp(fixture('anime-girl-1.isnet-general-use.png')).resize(255, 180).png().toBuffer();
  return sharp({ create: { ...SMALL_SUBJECT_FRAME, channels: 3, background: { r: 120, g: 140, b: 110 } } })
    .composite([{ input: cutout, left: 700, top: 600 }])
    .jpeg({ quality: 92 })
    .toBuffer();
}

export interface DecodedPixels {
  width: number;
  height: number;
  channels: number;
  data: Buffer;
}

export async function rawPixels(image: Buffer): Promise<DecodedPixels> {
  const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: info.channels, data };
}

/** The alpha channel of an RGBA image, or the only channel of a mask. */
export async function alphaChannel(image: Buffer): Promise<DecodedPixels> {
  const metadata = await sharp(image).metadata();
  const pipeline = metadata.channels === 1 ? sharp(image).extractChannel(0) : sharp(image).ensureAlpha().extractChannel(3);
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { width: info.width, height: info.height, channels: 1, data };
}

/** IoU of the masks thresholded at 0.5 and mean absolute error in [0,1]. */
export function compareAlpha(actual: Uint8Array, expected: Uint8Array): { iou: number; mae: number } {
  let intersection = 0;
  let union = 0;
  let absoluteError = 0;
  for (let index = 0; index < expected.length; index += 1) {
    const a = actual[index]!;
    const e = expected[index]!;
    const inA = a >= 128;
    const inE = e >= 128;
    if (inA && inE) intersection += 1;
    if (inA || inE) union += 1;
    absoluteError += Math.abs(a - e);
  }
  return { iou: union === 0 ? 1 : intersection / union, mae: absoluteError / (255 * expected.length) };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

export function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const typeAndData = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(typeAndData));
  return Buffer.concat([length, typeAndData, crc]);
}

/** A few-byte PNG whose header claims a huge image: a decompression bomb. */
export function pngClaimingSize(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', header),
    pngChunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}
