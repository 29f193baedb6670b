import type { RgbImage } from './types';

/**
 * What the subject is laid over: a solid colour (stride 0, so every pixel
 * reads the same bytes) or an image of the output's size (stride 1).
 */
export interface Backdrop {
  rgb: Buffer;
  /** null when the backdrop is opaque everywhere. */
  alpha: Buffer | null;
  stride: 0 | 1;
}

export interface Composited {
  pixels: Buffer;
  channels: 3 | 4;
}

export function solidBackdrop(red: number, green: number, blue: number, alpha = 255): Backdrop {
  return { rgb: Buffer.from([red, green, blue]), alpha: alpha === 255 ? null : Buffer.from([alpha]), stride: 0 };
}

/** Straight-alpha "over" onto an opaque backdrop: the result is opaque RGB. */
function overOpaque(image: RgbImage, alpha: Buffer, backdrop: Backdrop): Buffer {
  const pixelCount = image.width * image.height;
  const out = Buffer.allocUnsafe(pixelCount * 3);
  const { rgb } = image;
  const under = backdrop.rgb;
  const step = backdrop.stride * 3;
  for (let pixel = 0, index = 0, back = 0; pixel < pixelCount; pixel += 1, index += 3, back += step) {
    const keep = alpha[pixel]! / 255;
    out[index] = under[back]! + (rgb[index]! - under[back]!) * keep + 0.5;
    out[index + 1] = under[back + 1]! + (rgb[index + 1]! - under[back + 1]!) * keep + 0.5;
    out[index + 2] = under[back + 2]! + (rgb[index + 2]! - under[back + 2]!) * keep + 0.5;
  }
  return out;
}

/** "Over" onto a backdrop that is itself partly transparent: the result keeps an alpha channel. */
function overTranslucent(image: RgbImage, alpha: Buffer, backdrop: Backdrop, backdropAlpha: Buffer): Buffer {
  const pixelCount = image.width * image.height;
  const out = Buffer.allocUnsafe(pixelCount * 4);
  const { rgb } = image;
  const under = backdrop.rgb;
  for (let pixel = 0, index = 0, target = 0; pixel < pixelCount; pixel += 1, index += 3, target += 4) {
    const back = pixel * backdrop.stride;
    const front = alpha[pixel]! / 255;
    const behind = (backdropAlpha[back]! / 255) * (1 - front);
    const total = front + behind;
    const weight = total > 0 ? 1 / total : 0;
    for (let channel = 0; channel < 3; channel += 1) {
      out[target + channel] = (rgb[index + channel]! * front + under[back * 3 + channel]! * behind) * weight + 0.5;
    }
    out[target + 3] = total * 255 + 0.5;
  }
  return out;
}

/** The cutout onto `bg_color` or `bg_image`, and an input's own transparency flattened for the model. */
export function compositeOver(image: RgbImage, alpha: Buffer, backdrop: Backdrop): Composited {
  if (backdrop.alpha === null) return { pixels: overOpaque(image, alpha, backdrop), channels: 3 };
  return { pixels: overTranslucent(image, alpha, backdrop, backdrop.alpha), channels: 4 };
}
