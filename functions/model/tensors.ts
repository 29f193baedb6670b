/**
 * What a model takes and gives back. The model layer defines them because it
 * runs them; the pipeline makes the input (preprocess.ts) and reads the
 * output (postprocess.ts) from below.
 */

/** The model's input tensor data: float32 CHW for one square RGB image. */
export interface ModelInput {
  size: number;
  data: Float32Array;
}

/** The model's raw output map, size * size floats. */
export interface ModelOutput {
  size: number;
  data: Float32Array;
}
