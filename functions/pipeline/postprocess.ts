import type { MaskPostprocess } from '../model/registry';
import type { ModelOutput } from '../model/tensors';
import { cleanMask } from './maskFilters';
import { sharp } from './sharp';
import type { AlphaMask } from './types';

/** Min-max (optionally after a sigmoid) to [0,1], then to bytes by truncation, as rembg does. */
export function normaliseToBytes(output: ModelOutput, method: MaskPostprocess): Buffer {
  const values = output.data;
  const count = output.size * output.size;
  const squashed = method === 'sigmoid-minmax' ? new Float32Array(count) : values;
  if (method === 'sigmoid-minmax') {
    for (let index = 0; index < count; index += 1) squashed[index] = 1 / (1 + Math.exp(-values[index]!));
  }
  let minimum = Infinity;
  let maximum = -Infinity;
  for (let index = 0; index < count; index += 1) {
    const value = squashed[index]!;
    if (value < minimum) minimum = value;
    if (value > maximum) maximum = value;
  }
  const range = maximum - minimum;
  const scale = range > 0 ? 255 / range : 0;
  const bytes = Buffer.allocUnsafe(count);
  for (let index = 0; index < count; index += 1) bytes[index] = (squashed[index]! - minimum) * scale;
  return bytes;
}

/** Multiplies in the input's own alpha so regions that were already transparent stay so. */
function applyInputAlpha(mask: Buffer, inputAlpha: Buffer): void {
  for (let index = 0; index < mask.length; index += 1) {
    mask[index] = Math.round((mask[index]! * inputAlpha[index]!) / 255);
  }
}

/** The image a mask is fitted to: its size and its own alpha, if any. */
export interface MaskTarget {
  width: number;
  height: number;
  alpha: Buffer | null;
}

/** The model's map as a mask at the model's square size, before it is fitted to the image. */
export function modelMask(output: ModelOutput, method: MaskPostprocess): AlphaMask {
  return { width: output.size, height: output.size, alpha: normaliseToBytes(output, method) };
}

/** Resizes a mask to the image and applies the image's own alpha. */
export async function fitMask(mask: AlphaMask, target: MaskTarget): Promise<AlphaMask> {
  const alpha = await sharp(mask.alpha, { raw: { width: mask.width, height: mask.height, channels: 1 } })
    .resize(target.width, target.height, { fit: 'fill', kernel: 'lanczos3' })
    // A resized 1-channel raw image comes back with 3 channels unless told otherwise.
    .extractChannel(0)
    .raw()
    .toBuffer();
  if (target.alpha) applyInputAlpha(alpha, target.alpha);
  return { width: target.width, height: target.height, alpha };
}

/**
 * `clean` is `post_process`: rembg's opening, blur and threshold, run on the
 * model's 1024² map, where it scores as well as at full size for a tenth of
 * the time at 12 MP (bench/NOTES.md). The upscale then antialiases its edge.
 */
export function fitModelMask(mask: AlphaMask, target: MaskTarget, clean = false): Promise<AlphaMask> {
  return fitMask(clean ? cleanMask(mask) : mask, target);
}

/** The model's map → a full-size mask, in one step, for callers that keep no model-resolution mask. */
export function postprocess(output: ModelOutput, method: MaskPostprocess, target: MaskTarget, clean = false): Promise<AlphaMask> {
  return fitModelMask(modelMask(output, method), target, clean);
}
