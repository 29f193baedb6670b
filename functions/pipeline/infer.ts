import type { LoadedModel } from '../model/session';
import type { ModelInput, ModelOutput } from '../model/tensors';
import { averageMirrored, mirrorInput } from './augment';

/** The input's buffer is handed to the inference worker, so `input` is unusable afterwards. */
export async function infer(model: LoadedModel, input: ModelInput): Promise<ModelOutput> {
  const output = await model.run(input);
  const planeSize = output.size * output.size;
  if (output.data.length < planeSize) {
    throw new Error(`model ${model.entry.name} output has ${output.data.length} values, expected ${planeSize}`);
  }
  // Channel 0 of the first map, as rembg reads it.
  return output.data.length === planeSize ? output : { size: output.size, data: output.data.subarray(0, planeSize) };
}

/** `quality=high`: the model over the image and over its mirror image, averaged. */
export async function inferMirrored(model: LoadedModel, input: ModelInput): Promise<ModelOutput> {
  // Made before the first inference, which hands `input`'s buffer to the worker.
  const mirrored = mirrorInput(input);
  const output = await infer(model, input);
  return averageMirrored(output, await infer(model, mirrored));
}
