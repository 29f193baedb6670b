/** Messages between the main thread and the inference worker. */

export interface WorkerStartup {
  file: string;
  options: import('onnxruntime-node').InferenceSession.SessionOptions;
  input: string | null;
  output: string | null;
}

export interface RunRequest {
  type: 'run';
  id: number;
  size: number;
  /** Transferred, not copied. */
  data: Float32Array;
}

export type WorkerMessage =
  | { type: 'ready'; input: string; output: string }
  | { type: 'load-failed'; message: string }
  | { type: 'result'; id: number; data: Float32Array }
  | { type: 'run-failed'; id: number; message: string };
