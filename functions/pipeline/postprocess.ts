import type { MaskPostprocess } from '../model/registry';
import { sharp } from './sharp';
import type { AlphaMask, ModelOutput } from './types';

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

export async function postprocess(
  output: ModelOutput,
  method: MaskPostprocess,
  target: { width: number; height: number; alpha: Buffer | null },
): Promise<AlphaMask> {
  const bytes = normaliseToBytes(output, method);
  const alpha = await sharp(bytes, { raw: { width: output.size, height: output.size, channels: 1 } })
    .resize(target.width, target.height, { fit: 'fill', kernel: 'lanczos3' })
    // A resized 1-channel raw image comes back with 3 channels unless told otherwise.
    .extractChannel(0)
    .raw()
    .toBuffer();
  if (target.alpha) applyInputAlpha(alpha, target.alpha);
  return { width: target.width, height: target.height, alpha };
}
