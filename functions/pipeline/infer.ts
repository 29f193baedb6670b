import * as ort from 'onnxruntime-node';
import type { LoadedModel } from '../model/session';
import type { ModelInput, ModelOutput } from './types';

/** Runs the model and fetches only the one output we use: the others cost memory for nothing. */
export async function infer(model: LoadedModel, input: ModelInput): Promise<ModelOutput> {
  const { size } = input;
  const tensor = new ort.Tensor('float32', input.data, [1, 3, size, size]);
  const results = await model.session.run({ [model.inputName]: tensor }, [model.outputName]);
  const output = results[model.outputName];
  if (!output || output.type !== 'float32') throw new Error(`model ${model.entry.name} gave no float32 ${model.outputName}`);
  const planeSize = size * size;
  const data = output.data as Float32Array;
  if (data.length < planeSize) throw new Error(`model ${model.entry.name} output has ${data.length} values, expected ${planeSize}`);
  // Channel 0 of the first map, as rembg reads it.
  return { size, data: data.length === planeSize ? data : data.subarray(0, planeSize) };
}
