/** Pure size arithmetic, shared by decoding and by the memory estimate (which must not load sharp). */

export interface Size {
  width: number;
  height: number;
}

/** The size an image is decoded at when `size` caps its pixels; null when it already fits. */
export function fittedSize(size: Size, maxPixels: number | null | undefined): Size | null {
  if (!maxPixels || size.width * size.height <= maxPixels) return null;
  const factor = Math.sqrt(maxPixels / (size.width * size.height));
  return { width: Math.max(1, Math.floor(size.width * factor)), height: Math.max(1, Math.floor(size.height * factor)) };
}

/** Pixels as error messages give them: `39.7 MP`. */
export function megapixels(pixels: number): string {
  return `${(pixels / 1e6).toFixed(1)} MP`;
}

/** A size as error messages give it: `6300x6300 (39.7 MP)`. */
export function describeSize(width: number, height: number): string {
  return `${width}x${height} (${megapixels(width * height)})`;
}

/** The size an image is processed at: fitted under `maxPixels`, or its own. */
export function processedSize(size: Size, maxPixels: number | null | undefined): Size {
  return fittedSize(size, maxPixels) ?? { width: size.width, height: size.height };
}
