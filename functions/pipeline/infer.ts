import type { LoadedModel } from '../model/session';
import type { ModelInput, ModelOutput } from '../model/tensors';
import { averageMirrored, mirrorInput } from './augment';

/** One inference: the service's is `infer` on its loaded model; a benchmark may pass its own session, or a memo of one. */
export type RunModel = (input: ModelInput) => Promise<ModelOutput>;

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

/** The model over the image and over its mirror image, averaged (`quality=high`'s first pass). */
export async function inferMirrored(run: RunModel, input: ModelInput): Promise<ModelOutput> {
  // Made before the first inference, which hands `input`'s buffer to the worker.
  const mirrored = mirrorInput(input);
  const output = await run(input);
  return averageMirrored(output, await run(mirrored));
}
