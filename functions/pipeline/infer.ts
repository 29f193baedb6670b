import type { LoadedModel } from '../model/session';
import type { ModelInput, ModelOutput } from './types';

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
