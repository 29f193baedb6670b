/** Plain data handed from one pipeline stage to the next. */

/** 8-bit sRGB pixels, upright (EXIF orientation applied), interleaved. */
export interface RgbImage {
  width: number;
  height: number;
  /** width * height * 3 bytes. */
  rgb: Buffer;
}

export interface DecodedImage extends RgbImage {
  /** The image's own alpha, width * height bytes, or null when it is opaque. */
  alpha: Buffer | null;
  /** Upright size before `size` shrank it; px lengths in parameters refer to it. */
  sourceWidth: number;
  sourceHeight: number;
  /** Container format as detected from the bytes, not from any file name. */
  format: string;
}

/** Foreground opacity, one byte per pixel. */
export interface AlphaMask {
  width: number;
  height: number;
  alpha: Buffer;
}

/** A colour with straight alpha, each channel 0–255: `bg_color`'s backdrop. */
export type Rgba = readonly [number, number, number, number];

export type OutputFormat = 'png' | 'webp' | 'jpeg' | 'zip';
/**
 * Each format's file extension, for the CLI's files and the storage
 * function's objects. Here rather than in encode.ts, which loads sharp: both
 * name their outputs before anything is decoded.
 */
export const FILE_EXTENSIONS: Readonly<Record<OutputFormat, string>> = { png: 'png', webp: 'webp', jpeg: 'jpg', zip: 'zip' };
/** rgba: the cutout; alpha: the mask alone, as a grayscale image. */
export type Channels = 'rgba' | 'alpha';

/** A rectangle in pixels. */
export interface Box {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface EncodedImage {
  body: Buffer;
  contentType: string;
  format: OutputFormat;
  width: number;
  height: number;
}
