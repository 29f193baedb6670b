import { ApiError } from '../errors';
import { isOpaque, splitRgba } from './interleave';
import { sharp } from './sharp';
import { describeSize, fittedSize, megapixels } from './size';
import type { DecodedImage } from './types';

/** EXIF orientations 5–8 turn the image a quarter, swapping width and height. */
function uprightSize(orientation: number, width: number, height: number): { width: number; height: number } {
  return orientation >= 5 ? { width: height, height: width } : { width, height };
}


/**
 * The format the leading bytes announce, named as sharp's metadata names it
 * (AVIF is heif with av1 compression), or null. libvips would otherwise try
 * every loader it has: SVG (librsvg, which resolves references), PDF and the
 * rest never see an upload unless its first bytes are one of ours.
 */
export function sniffFormat(bytes: Buffer): string | null {
  const startsWith = (signature: string | number[], offset = 0): boolean => {
    const expected = typeof signature === 'string' ? Buffer.from(signature, 'latin1') : Buffer.from(signature);
    return bytes.length >= offset + expected.length && bytes.subarray(offset, offset + expected.length).equals(expected);
  };
  if (startsWith([0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith('GIF87a') || startsWith('GIF89a')) return 'gif';
  if (startsWith('RIFF') && startsWith('WEBP', 8)) return 'webp';
  // Classic and BigTIFF, either byte order.
  if (startsWith('II*\0') || startsWith('MM\0*') || startsWith('II+\0') || startsWith('MM\0+')) return 'tiff';
  // An ISO-BMFF file; readHeader's caller keeps only AVIF among them.
  if (startsWith('ftyp', 4)) return 'heif';
  return null;
}

function unreadableHeader(cause?: unknown): ApiError {
  return new ApiError('corrupt_image', 'The image header could not be read: the file is corrupt or truncated.', { cause });
}

async function readHeader(bytes: Buffer): Promise<import('sharp').Metadata> {
  const announced = sniffFormat(bytes);
  if (announced === null) {
    throw new ApiError('unsupported_media_type', 'The upload is not an image in a supported format (JPEG, PNG, WebP, AVIF, GIF or TIFF).');
  }
  let header: import('sharp').Metadata;
  try {
    header = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw unreadableHeader(error);
  }
  // The loader libvips chose must be the one the signature named, or some other loader read our bytes.
  if (header.format !== announced) throw unreadableHeader();
  return header;
}

/** What the header says, before any pixel is decoded: enough to estimate a request's memory. */
export interface ImageHeader {
  format: string;
  /** Upright size (EXIF orientation applied). */
  width: number;
  height: number;
  hasAlpha: boolean;
  /** EXIF orientations other than 1 make libvips hold the whole image to turn it. */
  rotated: boolean;
  /** Size of the compressed bytes. */
  bytes: number;
}

/**
 * Reads and checks the header, so that unsupported, corrupt and oversized
 * images are refused before any pixel is decoded or any memory reserved.
 */
export async function readImageHeader(bytes: Buffer, maxInputPixels: number): Promise<ImageHeader> {
  const header = await readHeader(bytes);
  const format = header.format;
  if (format === 'heif' && header.compression !== 'av1') {
    throw new ApiError('unsupported_media_type', `Images of format ${format} are not supported; send JPEG, PNG, WebP, AVIF, GIF or TIFF.`);
  }
  const width = header.width ?? 0;
  const height = header.height ?? 0;
  if (width < 1 || height < 1) throw new ApiError('corrupt_image', 'The image has no pixels.');
  if (width * height > maxInputPixels) {
    throw new ApiError(
      'image_too_large',
      `The image is ${describeSize(width, height)}; the limit is ${megapixels(maxInputPixels)}.`,
    );
  }
  const orientation = header.orientation ?? 1;
  return { format, ...uprightSize(orientation, width, height), hasAlpha: header.hasAlpha === true, rotated: orientation !== 1, bytes: bytes.length };
}


/** Decodes the first frame of an image whose header was read, to upright 8-bit sRGB, `maxOutputPixels` at most. */
export async function decodeWithHeader(bytes: Buffer, header: ImageHeader, maxOutputPixels: number | null = null): Promise<DecodedImage> {
  const fitted = fittedSize(header, maxOutputPixels);
  let decoded: { data: Buffer; info: import('sharp').OutputInfo };
  try {
    let pipeline = sharp(bytes, { failOn: 'truncated', limitInputPixels: header.width * header.height, pages: 1 }).autoOrient();
    if (fitted) pipeline = pipeline.resize(fitted.width, fitted.height, { fit: 'fill', kernel: 'lanczos3' });
    decoded = await pipeline
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
  } catch (error) {
    throw new ApiError('corrupt_image', 'The image could not be decoded: the file is corrupt or truncated.', { cause: error });
  }
  const { data, info } = decoded;
  const size = { width: info.width, height: info.height, sourceWidth: header.width, sourceHeight: header.height };
  if (info.channels === 3) return { ...size, rgb: data, alpha: null, format: header.format };
  return { ...size, ...splitAlpha(data, info.width * info.height), format: header.format };
}

export interface DecodeLimits {
  maxInputPixels: number;
  /** Larger images are scaled down to this many pixels while decoding (JPEG shrinks on load). */
  maxOutputPixels?: number | null;
}

/** Header, then pixels: for callers that have no memory to reserve in between. */
export async function decodeImage(bytes: Buffer, limits: DecodeLimits): Promise<DecodedImage> {
  return decodeWithHeader(bytes, await readImageHeader(bytes, limits.maxInputPixels), limits.maxOutputPixels);
}

/** A fully opaque alpha is dropped so later stages skip it. */
function splitAlpha(rgba: Buffer, pixelCount: number): { rgb: Buffer; alpha: Buffer | null } {
  const { rgb, alpha } = splitRgba(rgba, pixelCount);
  return { rgb, alpha: isOpaque(alpha) ? null : alpha };
}
