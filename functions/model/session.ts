import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { InferenceSession } from 'onnxruntime-node';
import { modelUnavailable } from '../errors';
import type { RunRequest, WorkerMessage, WorkerStartup } from './protocol';
import { type ModelEntry, modelFilePath } from './registry';
import type { ModelInput, ModelOutput } from './tensors';
import { checkWeights, weightsCorrupt, weightsMissing } from './weights';

export interface LoadedModel {
  entry: ModelEntry;
  /** False once the worker has died; the holder then loads again. */
  readonly alive: boolean;
  run(input: ModelInput): Promise<ModelOutput>;
  release(): Promise<void>;
}

export interface SessionSettings {
  modelsDir: string;
  inferThreads: number;
  /** onnxruntime's CPU memory arena: faster inference for more memory (INFER_CPU_ARENA). */
  cpuArena?: boolean;
}

/**
 * Measured here on IS-Net 1024²: the CPU arena and the memory pattern
 * together roughly double peak RSS (2.2–2.5 GB), so the pattern stays off.
 * The arena alone (INFER_CPU_ARENA, on by default) makes onnxruntime-node
 * 1.30's inference about 3× faster for 175-225 MiB more peak
 * (`node dist/bench/floor.js`, docs/performance.md), so it is on.
 */
export function sessionOptions(settings: SessionSettings): InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    enableCpuMemArena: settings.cpuArena === true,
    enableMemPattern: false,
    executionMode: 'sequential',
    intraOpNumThreads: settings.inferThreads,
    interOpNumThreads: 1,
  };
}

type Pending = { resolve: (output: ModelOutput) => void; reject: (error: Error) => void; size: number };

/** The main thread's side of one model session living in a worker thread. */
class WorkerModel implements LoadedModel {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private dead = false;

  constructor(
    readonly entry: ModelEntry,
    private readonly worker: Worker,
  ) {
    worker.on('message', (message: WorkerMessage) => {
      if (message.type !== 'result' && message.type !== 'run-failed') return;
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      // An idle worker must not keep the process alive (tests, the CLI); a busy one must.
      if (this.pending.size === 0) this.worker.unref();
      if (message.type === 'result') waiting.resolve({ size: waiting.size, data: message.data });
      else waiting.reject(new Error(`inference failed: ${message.message}`));
    });
    const die = (reason: string): void => {
      this.dead = true;
      // Not the request's fault, and the next request gets a fresh worker: a retry will do.
      const stopped = modelUnavailable('The inference worker stopped while running this request; retry shortly.', new Error(reason));
      for (const waiting of this.pending.values()) waiting.reject(stopped);
      this.pending.clear();
    };
    worker.on('error', (error) => die(`inference worker crashed: ${error.message}`));
    worker.on('exit', (code) => die(`inference worker exited with code ${code}`));
  }

  get alive(): boolean {
    return !this.dead;
  }

  run(input: ModelInput): Promise<ModelOutput> {
    if (this.dead) return Promise.reject(new Error('inference worker is not running'));
    const id = this.nextId++;
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, size: input.size });
      const request: RunRequest = { type: 'run', id, size: input.size, data: input.data };
      this.worker.postMessage(request, [input.data.buffer as ArrayBuffer]);
    });
  }

  async release(): Promise<void> {
    this.dead = true;
    await this.worker.terminate();
  }
}

function startWorker(startup: WorkerStartup): Promise<{ worker: Worker; failure: string | null }> {
  const worker = new Worker(path.join(__dirname, 'inferenceWorker.js'), { workerData: startup });
  return new Promise((resolve) => {
    const settle = (failure: string | null): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
      resolve({ worker, failure });
    };
    const onMessage = (message: WorkerMessage): void => {
      if (message.type === 'ready') settle(null);
      else if (message.type === 'load-failed') settle(message.message);
    };
    const onError = (error: Error): void => settle(error.message);
    const onExit = (code: number): void => settle(`worker exited with code ${code}`);
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

export async function loadModel(entry: ModelEntry, settings: SessionSettings): Promise<LoadedModel> {
  const file = modelFilePath(settings.modelsDir, entry);
  const weights = checkWeights(entry, settings.modelsDir, 'size');
  if (weights === 'missing') throw weightsMissing(entry, new Error(`no file ${file}`));
  // A file of the wrong size cannot be the registry's weights: refused without starting a worker to find out.
  if (weights === 'mismatch') throw weightsCorrupt(entry, new Error(`${file} is not a regular file${entry.bytes === null ? '' : ` of ${entry.bytes} bytes`}`));
  const { worker, failure } = await startWorker({ file, options: sessionOptions(settings), input: entry.input, output: entry.output });
  if (failure !== null) {
    await worker.terminate();
    throw weightsCorrupt(entry, new Error(failure));
  }
  worker.unref();
  return new WorkerModel(entry, worker);
}
