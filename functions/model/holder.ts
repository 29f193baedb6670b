import type { Logger } from '../log';
import { findModel, type ModelEntry } from './registry';
import type { LoadedModel, SessionSettings } from './session';
import { Gate } from './gate';

export type ModelLoader = (entry: ModelEntry, settings: SessionSettings) => Promise<LoadedModel>;

export interface HolderSettings extends SessionSettings {
  model: string;
  maxConcurrentInferences: number;
}

/** Imported lazily so that a process which only answers health never loads onnxruntime. */
const loadWithOnnxRuntime: ModelLoader = async (entry, settings) => (await import('./session')).loadModel(entry, settings);

/**
 * The process's one piece of shared state: the model, loaded on first need.
 *
 * Concurrent first requests share one load because the promise is cached. A
 * failed load is forgotten, so the next request tries again, and the cached
 * promise always has a handler, so a failure is never an unhandled rejection
 * (which would make the functions framework exit the process).
 */
export class ModelHolder {
  readonly entry: ModelEntry;
  private loaded: LoadedModel | null = null;
  private loading: Promise<LoadedModel> | null = null;
  private readonly inferenceGate: Gate;
  private loadAttempts = 0;
  private inferencesStarted = 0;

  constructor(
    private readonly settings: HolderSettings,
    private readonly loader: ModelLoader = loadWithOnnxRuntime,
    private readonly logger?: Logger,
  ) {
    const entry = findModel(settings.model);
    if (!entry) throw new Error(`unknown model ${settings.model}`);
    this.entry = entry;
    // Admission control upstream bounds how many can wait here.
    this.inferenceGate = new Gate(settings.maxConcurrentInferences, Number.POSITIVE_INFINITY);
  }

  get isLoaded(): boolean {
    return this.loaded?.alive === true;
  }

  /** How many loads were started; a test hook for "one load for many first requests". */
  get loadCount(): number {
    return this.loadAttempts;
  }

  /** How many inferences got past the queue; dropped and refused requests never count. */
  get inferenceCount(): number {
    return this.inferencesStarted;
  }

  get(): Promise<LoadedModel> {
    if (this.loaded?.alive) return Promise.resolve(this.loaded);
    // A crashed inference worker is replaced on the next request.
    this.loaded = null;
    if (!this.loading) {
      this.loadAttempts += 1;
      const started = performance.now();
      const attempt = this.loader(this.entry, this.settings).then((model) => {
        this.loaded = model;
        this.logger?.info(`model ${this.entry.name} loaded`, { model: this.entry.name, loadMs: Math.round(performance.now() - started) });
        return model;
      });
      this.loading = attempt;
      attempt.then(
        () => {
          this.loading = null;
        },
        (error: unknown) => {
          if (this.loading === attempt) this.loading = null;
          const cause = (error as Error & { cause?: Error }).cause?.message;
          this.logger?.error(`model ${this.entry.name} failed to load`, { model: this.entry.name, error: (error as Error).message, cause });
        },
      );
    }
    return this.loading;
  }

  /** Runs inferences one at a time (by default); other requests decode and encode meanwhile. */
  runInference<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.inferenceGate.run(() => {
      this.inferencesStarted += 1;
      return task();
    }, signal);
  }
}
