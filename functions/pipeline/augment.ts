import type { ModelInput, ModelOutput } from '../model/tensors';

/**
 * Test-time augmentation for `quality=high`: the model also sees the image
 * mirrored, and the two maps are averaged. Segmentation errors are not
 * mirror-symmetric, so averaging cancels part of them.
 */

/** Reverses every row of every size×size plane in `source` into `target`. */
function mirrorRows(source: Float32Array, target: Float32Array, size: number): void {
  for (let rowStart = 0; rowStart < source.length; rowStart += size) {
    for (let x = 0, mirrored = rowStart + size - 1; x < size; x += 1, mirrored -= 1) target[rowStart + x] = source[mirrored]!;
  }
}

/**
 * The input flipped left to right, in a new buffer: `infer()` hands its
 * input's buffer to the worker, so call this before the first inference.
 */
export function mirrorInput(input: ModelInput): ModelInput {
  const data = new Float32Array(input.data.length);
  mirrorRows(input.data, data, input.size);
  return { size: input.size, data };
}

/** Un-flips the mirrored map and averages it with the plain one, before normalisation (so min-max sees the average). */
export function averageMirrored(output: ModelOutput, mirroredOutput: ModelOutput): ModelOutput {
  const { size } = output;
  if (mirroredOutput.size !== size) throw new Error(`mirrored output is ${mirroredOutput.size}², expected ${size}²`);
  const count = size * size;
  const data = new Float32Array(count);
  mirrorRows(mirroredOutput.data.subarray(0, count), data, size);
  const plain = output.data;
  for (let index = 0; index < count; index += 1) data[index] = (data[index]! + plain[index]!) * 0.5;
  return { size, data };
}
