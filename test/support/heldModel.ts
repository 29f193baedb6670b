import type { ModelLoader } from '../../functions/model/holder';
import { loadModel } from '../../functions/model/session';

/**
 * The real model, whose inferences wait until the test lets them through:
 * timeout and queue tests then depend on what the test does, never on how
 * fast this machine's CPU runs an inference.
 */
export interface HeldModel {
  loader: ModelLoader;
  /** Inferences waiting at the door now. */
  readonly waiting: number;
  /** Inferences that went through to the real model. */
  readonly ran: number;
  /** Lets every waiting and future inference through. */
  open(): void;
  /** Makes future inferences wait again. */
  close(): void;
  /** Resolves once `count` inferences are waiting. */
  untilWaiting(count: number): Promise<void>;
}

/** The real model, with `beforeRun` awaited before each of its inferences: what a test sees of the inferences, counted outside the holder. */
export function modelBeforeEachRun(beforeRun: () => void | Promise<void>): ModelLoader {
  return async (entry, settings) => {
    const model = await loadModel(entry, settings);
    return {
      entry: model.entry,
      get alive() {
        return model.alive;
      },
      run: async (input) => {
        await beforeRun();
        return model.run(input);
      },
      release: () => model.release(),
    };
  };
}

export function heldModel(): HeldModel {
  let release: (() => void) | null = null;
  let door: Promise<void> = Promise.resolve();
  let waiting = 0;
  let ran = 0;
  const watchers: { count: number; resolve: () => void }[] = [];
  const notify = (): void => {
    for (const watcher of [...watchers]) {
      if (waiting >= watcher.count) {
        watchers.splice(watchers.indexOf(watcher), 1);
        watcher.resolve();
      }
    }
  };
  const held: HeldModel = {
    loader: modelBeforeEachRun(async () => {
      waiting += 1;
      notify();
      await door;
      waiting -= 1;
      ran += 1;
    }),
    get waiting() {
      return waiting;
    },
    get ran() {
      return ran;
    },
    open() {
      release?.();
      release = null;
      door = Promise.resolve();
    },
    close() {
      if (release) return;
      door = new Promise((resolve) => (release = resolve));
    },
    untilWaiting(count) {
      return new Promise((resolve) => {
        watchers.push({ count, resolve });
        notify();
      });
    },
  };
  return held;
}
