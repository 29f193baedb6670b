import type { Rgb } from '../model/registry';
import type { RgbImage } from './types';

/**
 * Straight-alpha "over" onto a solid colour, one byte of alpha per pixel:
 * the cutout onto `bg_color`, and an input's own transparency flattened for
 * the model.
 */
export function compositeOnto(image: RgbImage, mask: { alpha: Buffer }, background: Rgb): Buffer {
  const pixelCount = image.width * image.height;
  const out = Buffer.allocUnsafe(pixelCount * 3);
  const { rgb } = image;
  const { alpha } = mask;
  const [red, green, blue] = background;
  for (let pixel = 0, index = 0; pixel < pixelCount; pixel += 1, index += 3) {
    const keep = alpha[pixel]! / 255;
    out[index] = red + (rgb[index]! - red) * keep + 0.5;
    out[index + 1] = green + (rgb[index + 1]! - green) * keep + 0.5;
    out[index + 2] = blue + (rgb[index + 2]! - blue) * keep + 0.5;
  }
  return out;
}
