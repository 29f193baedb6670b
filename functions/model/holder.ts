import type { Logger } from '../log';
import { Gate } from './gate';
import type { ModelEntry } from './registry';
import { allowedModel, type ModelSelection, previewCompanions } from './selection';
import type { LoadedModel, SessionSettings } from './session';
import type { ModelInput, ModelOutput } from './tensors';

export type ModelLoader = (entry: ModelEntry, settings: SessionSettings) => Promise<LoadedModel>;

export interface HolderSettings extends SessionSettings, ModelSelection {
  maxLoadedModels: number;
  maxConcurrentInferences: number;
}

const RUN_ATTEMPTS = 3;

/** Imported lazily so that a process which only answers health never loads onnxruntime. */
const loadWithOnnxRuntime: ModelLoader = async (entry, settings) => (await import('./session')).loadModel(entry, settings);

/** One model's place in the holder, from the first request for it until it is unloaded. */
class Slot {
  /** Settles when the session is up; shared by every concurrent first request. */
  readonly ready: Promise<LoadedModel>;
  model: LoadedModel | null = null;
  /** Unloaded (or being unloaded): new requests for the model get a fresh slot. */
  retired = false;
  lastUse = 0;
  /** Inferences that hold this session: it is not released under them. */
  private users = 0;
  private onIdle: (() => void) | null = null;

  constructor(
    readonly entry: ModelEntry,
    load: (slot: Slot) => Promise<LoadedModel>,
  ) {
    this.ready = load(this);
  }

  enter(): void {
    this.users += 1;
  }

  leave(): void {
    this.users -= 1;
    if (this.users === 0) this.onIdle?.();
  }

  idle(): Promise<void> {
    return this.users === 0 ? Promise.resolve() : new Promise((resolve) => (this.onIdle = resolve));
  }

  /** Whichever of the unload and a load that finished after it comes second finds nothing to release. */
  async release(): Promise<boolean> {
    const model = this.model;
    this.model = null;
    if (model) await model.release();
    return model !== null;
  }
}

/**
 * The process's one piece of shared state: the models, each loaded on first
 * need, at most `maxLoadedModels` at a time, least recently used unloaded first.
 *
 * - Concurrent first requests for a model share one load (the slot's promise).
 *   A failed load is forgotten, so the next request tries again, and the
 *   promise always has a handler, so a failure is never an unhandled rejection
 *   (which would make the functions framework exit the process).
 * - Loads run one at a time, and a load first unloads the models it displaces
 *   and waits for their sessions to be released: two IS-Net sessions plus an
 *   inference do not fit in 2 GiB, so the bound holds at every instant.
 * - An unloaded model is released only after the inferences running on it end.
 *   A request that got the model before it was unloaded and runs afterwards
 *   loads it again (see `LoadedModel.run` below); it never meets a dead session.
 * - One inference gate covers every model: by default two 1024² inferences
 *   never run at once, whichever models they use.
 * - A preview variant that PREVIEW_MODEL=auto brought in stays loaded beside
 *   the others and is not counted against the bound (the memory reserve
 *   counts it instead): small and large results alternate, and unloading one
 *   model for the other at each switch would cost a load every time.
 */
export class ModelHolder {
  private readonly slots = new Map<string, Slot>();
  private loads: Promise<unknown> = Promise.resolve();
  private readonly defaultEntry: ModelEntry;
  private readonly companions: ReadonlySet<string>;
  private readonly inferenceGate: Gate;
  private lastInferenceEnded = Number.NEGATIVE_INFINITY;
  private useClock = 0;

  constructor(
    private readonly settings: HolderSettings,
    private readonly loader: ModelLoader = loadWithOnnxRuntime,
    private readonly logger?: Logger,
  ) {
    this.defaultEntry = allowedModel(settings, settings.model);
    this.companions = new Set(previewCompanions(settings).map((entry) => entry.name));
    // Admission control upstream bounds how many can wait here.
    this.inferenceGate = new Gate(settings.maxConcurrentInferences, Number.POSITIVE_INFINITY);
  }

  /** The configured model, used when a request names none. */
  get entry(): ModelEntry {
    return this.defaultEntry;
  }

  /** Whether the configured model is loaded. */
  get isLoaded(): boolean {
    return this.isModelLoaded(this.defaultEntry.name);
  }

  isModelLoaded(name: string): boolean {
    const slot = this.slots.get(name);
    return slot?.model?.alive === true && !slot.retired;
  }

  /**
   * The model `name` (default: the configured one), loaded if need be. Only
   * allowed registry names are accepted; anything else is a 400 ApiError.
   * Its `run` goes through the holder, so the session it uses is never one
   * that was released meanwhile.
   */
  async get(name?: string): Promise<LoadedModel> {
    const entry = allowedModel(this.settings, name);
    const slot = this.slotFor(entry);
    this.touch(slot);
    const model = await slot.ready;
    return {
      entry,
      get alive() {
        return model.alive;
      },
      run: (input: ModelInput) => this.runOn(entry, input),
      release: () => this.unload(entry.name),
    };
  }

  /** Milliseconds since an inference last finished on any model; Infinity before the first. */
  get msSinceInference(): number {
    return performance.now() - this.lastInferenceEnded;
  }

  /** Runs inferences one at a time (by default) across all models; other requests decode and encode meanwhile. */
  runInference<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    return this.inferenceGate.run(async () => {
      try {
        return await task();
      } finally {
        this.lastInferenceEnded = performance.now();
      }
    }, signal);
  }

  /** A held model's `release`: unloads it now (after its running inferences); the next request loads it again. */
  private async unload(name: string): Promise<void> {
    const slot = this.slots.get(name);
    if (slot) await this.retire(slot);
  }

  /** The current slot of a model, or a new one whose load is queued behind the others. */
  private slotFor(entry: ModelEntry): Slot {
    const existing = this.slots.get(entry.name);
    if (existing && existing.model?.alive !== false) return existing;
    // A crashed inference worker is replaced on the next request.
    if (existing) void this.retire(existing);
    const slot = new Slot(entry, (created) => this.queueLoad(created));
    this.slots.set(entry.name, slot);
    slot.ready.then(
      () => undefined,
      (error: unknown) => {
        if (this.slots.get(entry.name) === slot) this.slots.delete(entry.name);
        const cause = (error as Error & { cause?: Error }).cause?.message;
        this.logger?.error(`model ${entry.name} failed to load`, { model: entry.name, error: (error as Error).message, cause });
      },
    );
    return slot;
  }

  private queueLoad(slot: Slot): Promise<LoadedModel> {
    const load = this.loads.then(async () => {
      await this.makeRoom(slot);
      const started = performance.now();
      const model = await this.loader(slot.entry, this.settings);
      slot.model = model;
      this.logger?.info(`model ${slot.entry.name} loaded`, { model: slot.entry.name, loadMs: Math.round(performance.now() - started) });
      // Unloaded while it loaded: nobody has used it yet, so it goes at once.
      if (slot.retired) await slot.release();
      return model;
    });
    this.loads = load.catch(() => undefined);
    return load;
  }

  /** Unloads the least recently used models until the one about to load fits; a companion needs no room and takes none. */
  private async makeRoom(incoming: Slot): Promise<void> {
    if (this.companions.has(incoming.entry.name)) return;
    for (;;) {
      const loaded = [...this.slots.values()].filter(
        (slot) => slot !== incoming && slot.model !== null && !slot.retired && !this.companions.has(slot.entry.name),
      );
      if (loaded.length < this.settings.maxLoadedModels) return;
      await this.retire(loaded.reduce((a, b) => (a.lastUse <= b.lastUse ? a : b)));
    }
  }

  private async retire(slot: Slot): Promise<void> {
    if (this.slots.get(slot.entry.name) === slot) this.slots.delete(slot.entry.name);
    if (slot.retired) return;
    slot.retired = true;
    await slot.idle();
    if (await slot.release()) this.logger?.info(`model ${slot.entry.name} unloaded`, { model: slot.entry.name });
  }

  private touch(slot: Slot): void {
    this.useClock += 1;
    slot.lastUse = this.useClock;
  }

  /**
   * Holds the model's session for the inference. The slot is claimed before
   * any await, so an unload that starts meanwhile waits for this inference.
   */
  private async runOn(entry: ModelEntry, input: ModelInput): Promise<ModelOutput> {
    // Each pass follows an unload or a crash; only a model that never stays up runs out of them.
    for (let attempt = 1; attempt <= RUN_ATTEMPTS; attempt += 1) {
      const slot = this.slotFor(entry);
      this.touch(slot);
      slot.enter();
      try {
        const model = await slot.ready;
        if (!slot.retired && model.alive) return await model.run(input);
      } finally {
        slot.leave();
      }
    }
    throw new Error(`model ${entry.name} was unloaded or crashed ${RUN_ATTEMPTS} times before it could run`);
  }
}
