import type { ModelEntry } from '../model/registry';
import type { ModelInput } from '../model/tensors';
import { compositeOver, solidBackdrop } from './composite';
import { sharp } from './sharp';
import type { DecodedImage } from './types';

const WHITE = solidBackdrop(255, 255, 255);

/**
 * rembg-compatible input: Lanczos resize to the model's square, divide by the
 * image's maximum value (not by 255), then per-channel (x - mean) / std, CHW.
 */
export async function preprocess(image: DecodedImage, entry: ModelEntry): Promise<ModelInput> {
  const size = entry.inputSize;
  // Pixels hidden by the input's own alpha still carry colours; the model sees them flattened onto white.
  const pixels = image.alpha === null ? image.rgb : compositeOver(image, image.alpha, WHITE).pixels;
  const resized = await sharp(pixels, { raw: { width: image.width, height: image.height, channels: 3 } })
    .resize(size, size, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer();

  let maximum = 0;
  for (let index = 0; index < resized.length; index += 1) {
    if (resized[index]! > maximum) maximum = resized[index]!;
  }
  const scale = 1 / Math.max(maximum, 1e-6);

  const planeSize = size * size;
  const data = new Float32Array(3 * planeSize);
  for (let channel = 0; channel < 3; channel += 1) {
    const mean = entry.mean[channel]!;
    const inverseStd = 1 / entry.std[channel]!;
    const offset = channel * planeSize;
    for (let pixel = 0, source = channel; pixel < planeSize; pixel += 1, source += 3) {
      data[offset + pixel] = (resized[source]! * scale - mean) * inverseStd;
    }
  }
  return { size, data };
}
