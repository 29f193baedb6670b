import type { Sharp } from 'sharp';
import { ApiError } from '../errors';
import { isOpaque, splitRgba } from './interleave';
import { type Backdrop, compositeOver, solidBackdrop } from './composite';
import { sharp } from './sharp';
import type { AlphaMask, Channels, EncodedImage, OutputFormat, RgbImage } from './types';
import { zipStored } from './zip';

/** `auto`: PNG when the result has transparency, JPEG when it is opaque (and JPEG can hold its size). */
export type RequestedFormat = OutputFormat | 'auto';

export interface EncodeOptions {
  format: RequestedFormat;
  channels: Channels;
}

export type ImageFormat = Exclude<OutputFormat, 'zip'>;

const CONTENT_TYPES: Record<OutputFormat, string> = {
  png: 'image/png',
  webp: 'image/webp',
  jpeg: 'image/jpeg',
  zip: 'application/zip',
};

/**
 * The longest side each encoder writes: libwebp's WEBP_MAX_DIMENSION, libjpeg's
 * JPEG_MAX_DIMENSION (65500, not 65535) and PNG's 2^31 − 1. Past them libvips
 * refuses the encode, after the whole pipeline has run.
 */
export const MAX_SIDE: Readonly<Record<ImageFormat, number>> = { png: 2 ** 31 - 1, jpeg: 65_500, webp: 16_383 };

const FORMAT_NAMES: Readonly<Record<ImageFormat, string>> = { png: 'PNG', jpeg: 'JPEG', webp: 'WebP' };
/** How a request names each format, for advice. */
const FORMAT_PARAMETERS: Readonly<Record<ImageFormat, string>> = { png: 'png', jpeg: 'jpg', webp: 'webp' };

function fits(format: ImageFormat, width: number, height: number): boolean {
  return Math.max(width, height) <= MAX_SIDE[format];
}

/** The encoders a requested format may need: zip holds a JPEG and a PNG; auto can always fall back to PNG. */
function encodersFor(format: RequestedFormat): readonly ImageFormat[] {
  if (format === 'zip') return ['jpeg', 'png'];
  return [format === 'auto' ? 'png' : format];
}

/**
 * Refuses, with 422 output_not_encodable, a result of width x height that the
 * requested format cannot hold, whatever the mask turns out to be: under
 * `auto` only PNG's limit counts, as auto then picks PNG over JPEG. Pure, so
 * it can run before inference whenever the output size is already known:
 * without `crop` the output is exactly the decoded image (after `size`), as
 * `scale` and `position` keep the canvas. `encode` checks again at the end.
 */
export function checkEncodable(width: number, height: number, options: EncodeOptions): void {
  const failing = encodersFor(options.format).find((encoder) => !fits(encoder, width, height));
  if (failing === undefined) return;
  const holder = options.format === 'zip' ? `format=zip holds a JPEG (color.jpg), and ${FORMAT_NAMES[failing]}` : FORMAT_NAMES[failing];
  const others = (Object.keys(MAX_SIDE) as ImageFormat[]).filter((format) => format !== failing && fits(format, width, height));
  const advice = [...others.map((format) => `format=${FORMAT_PARAMETERS[format]}`), 'a smaller size'].join(' or ');
  throw new ApiError('output_not_encodable', `${holder} holds at most ${MAX_SIDE[failing]} px per side; this result is ${width}x${height}: use ${advice}.`);
}

/** JPEG has no alpha, so whatever is still transparent lands on white. */
const JPEG_BACKDROP = solidBackdrop(255, 255, 255);

export interface RawPixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 3 | 4;
}

/**
 * Straight (not premultiplied) RGBA. Colour under alpha 0 stays zero: it is
 * invisible, and zeros make smaller, faster PNGs. One 32-bit store per visible
 * pixel (little-endian: R in the low byte) measured 29 ms against 113 ms for
 * byte stores at 12 MP, with the same PNG bytes.
 */
function interleaveRgba(image: RgbImage, alpha: Buffer): Buffer {
  const pixelCount = image.width * image.height;
  const words = new Uint32Array(pixelCount);
  const { rgb } = image;
  for (let pixel = 0, source = 0; pixel < pixelCount; pixel += 1, source += 3) {
    const a = alpha[pixel]!;
    if (a !== 0) words[pixel] = (rgb[source]! | (rgb[source + 1]! << 8) | (rgb[source + 2]! << 16) | (a << 24)) >>> 0;
  }
  return Buffer.from(words.buffer, words.byteOffset, words.byteLength);
}

function toFormat(pipeline: Sharp, format: ImageFormat): Sharp {
  switch (format) {
    case 'png':
      // Level 3: 155 ms and 4.82 MB at 12 MP against 180 ms and 4.78 MB at 6 (bench/NOTES.md).
      return pipeline.png({ compressionLevel: 3 });
    case 'webp':
      // Effort 2: 1.8 s at 12 MP against 4.8 s at the default 4, for 3% more bytes.
      return pipeline.webp({ quality: 90, alphaQuality: 100, effort: 2 });
    case 'jpeg':
      return pipeline.jpeg({ quality: 90, mozjpeg: false });
  }
}

/**
 * The one place libvips encodes. Whatever it refuses here is about the
 * output, not the caller's input or a fault of ours, so it is a 422 whose
 * cause (libvips' own words) goes to the log line.
 */
export async function compress(pixels: RawPixels, format: ImageFormat): Promise<Buffer> {
  const { data, width, height, channels } = pixels;
  let pipeline = sharp(data, { raw: { width, height, channels } });
  if (channels === 1) pipeline = pipeline.toColourspace('b-w');
  try {
    return await toFormat(pipeline, format).toBuffer();
  } catch (error) {
    throw new ApiError('output_not_encodable', `The ${width}x${height} result could not be encoded as ${FORMAT_NAMES[format]}.`, {
      cause: error,
      logCause: true,
    });
  }
}

function maskPixels(mask: AlphaMask): RawPixels {
  return { data: mask.alpha, width: mask.width, height: mask.height, channels: 1 };
}

/** The cutout as raw pixels: over the backdrop if there is one, else RGBA. */
function cutoutPixels(image: RgbImage, mask: AlphaMask, backdrop: Backdrop | null): RawPixels {
  const { width, height } = image;
  if (!backdrop) return { data: interleaveRgba(image, mask.alpha), width, height, channels: 4 };
  const { pixels, channels } = compositeOver(image, mask.alpha, backdrop);
  return { data: pixels, width, height, channels };
}

/** JPEG cannot hold alpha, so a result that still has some is put over white first. */
function opaque(pixels: RawPixels): RawPixels {
  if (pixels.channels !== 4) return pixels;
  const { width, height, data } = pixels;
  const { rgb, alpha } = splitRgba(data, width * height);
  return { data: compositeOver({ width, height, rgb }, alpha, JPEG_BACKDROP).pixels, width, height, channels: 3 };
}

/**
 * remove.bg's ZIP: `color.jpg` holds the colours (over the backdrop when one
 * was asked for, so the visible result is right even without the matte) and
 * `alpha.png` the matte. Together they are much smaller than an RGBA PNG.
 */
async function encodeZip(image: RgbImage, mask: AlphaMask, backdrop: Backdrop | null): Promise<Buffer> {
  const colour = backdrop ? opaque(cutoutPixels(image, mask, backdrop)) : { data: image.rgb, width: image.width, height: image.height, channels: 3 as const };
  const [colourJpeg, alphaPng] = await Promise.all([compress(colour, 'jpeg'), compress(maskPixels(mask), 'png')]);
  return zipStored([
    { name: 'color.jpg', data: colourJpeg },
    { name: 'alpha.png', data: alphaPng },
  ]);
}

export async function encode(image: RgbImage, mask: AlphaMask, options: EncodeOptions, backdrop: Backdrop | null = null): Promise<EncodedImage> {
  const { width, height } = image;
  checkEncodable(width, height, options);
  if (options.format === 'zip') {
    return { body: await encodeZip(image, mask, backdrop), contentType: CONTENT_TYPES.zip, format: 'zip', width, height };
  }
  if (options.channels === 'alpha') {
    const format = options.format === 'auto' ? 'png' : options.format;
    return { body: await compress(maskPixels(mask), format), contentType: CONTENT_TYPES[format], format, width, height };
  }
  // Straight onto white for a JPEG of a transparent cutout: one pass instead of RGBA and then a flatten.
  // A fully opaque cutout under `auto` shows nothing of its backdrop, so white gives it its JPEG too.
  const needsBackdrop = options.format === 'jpeg' || (options.format === 'auto' && isOpaque(mask.alpha));
  let pixels = cutoutPixels(image, mask, backdrop ?? (needsBackdrop ? JPEG_BACKDROP : null));
  const jpegWillDo = pixels.channels === 3 && fits('jpeg', width, height);
  const format: ImageFormat = options.format === 'auto' ? (jpegWillDo ? 'jpeg' : 'png') : options.format;
  if (format === 'jpeg') pixels = opaque(pixels);
  return { body: await compress(pixels, format), contentType: CONTENT_TYPES[format], format, width, height };
}
