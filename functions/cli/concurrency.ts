/**
 * How many requests the CLI keeps in flight to an endpoint: a window that,
 * unless fixed by --concurrency, grows while answers come back and halves
 * when the fleet says it is full (429 or 503), as TCP's congestion window
 * does. The client cannot know the fleet's size: instances scale between
 * --min-instances and --max-instances while the run goes on, and another
 * caller may be using them. What it can see is cheap and quick: an instance
 * past its MAX_QUEUE answers 503 at once, and Cloud Run answers 429 when no
 * instance can take a request. So the run starts at what one instance takes,
 * doubles each round of answers until the first refusal (slow start), then
 * grows by one per round and halves at each refusal: it settles just below
 * the point where the queues overflow, and follows the fleet as it scales.
 */
export type Answer = 'ok' | 'overloaded' | 'other';

export interface Permit {
  /** Gives the place back, saying how the request was answered; a second call does nothing. */
  release(answer: Answer): void;
}

export interface RequestWindow {
  /** Waits for a place in the window; rejects with the signal's reason if it aborts first. */
  acquire(signal?: AbortSignal): Promise<Permit>;
  /** Requests allowed in flight now. */
  readonly size: number;
  /** The most it will ever allow. */
  readonly ceiling: number;
}

/**
 * One deployed instance's places with scripts/deploy.sh's defaults
 * (--concurrency 4), which --min-instances 1 keeps up: there from the start.
 */
export const INITIAL_WINDOW = 4;
/**
 * The whole default fleet, --max-instances 10 × --concurrency 4: past it Cloud
 * Run would only answer 429. The batch keeps this many inputs in memory.
 */
export const WINDOW_CEILING = 40;

/** `adaptive` false: always `initial` (--concurrency N). */
export function requestWindow({ initial, ceiling, adaptive }: { initial: number; ceiling: number; adaptive: boolean }): RequestWindow {
  let size = initial;
  let inFlight = 0;
  let slowStart = true;
  // Answers since the window last grew by one, past slow start: a whole round of them grows it.
  let credit = 0;
  // Bumped at each halving: the refusals of requests sent before it describe the window it already halved.
  let epoch = 0;
  const waiting: (() => void)[] = [];

  const admit = (): void => {
    while (waiting.length > 0 && inFlight < size) {
      inFlight += 1;
      waiting.shift()!();
    }
  };

  const adapt = (answer: Answer, sentIn: number): void => {
    if (!adaptive) return;
    if (answer === 'overloaded' && sentIn === epoch) {
      size = Math.max(1, Math.floor(size / 2));
      epoch += 1;
      slowStart = false;
      credit = 0;
    } else if (answer === 'ok' && slowStart) {
      // One more per answer: the window doubles each round.
      size = Math.min(ceiling, size + 1);
    } else if (answer === 'ok' && (credit += 1) >= size) {
      size = Math.min(ceiling, size + 1);
      credit = 0;
    }
  };

  return {
    get size() {
      return size;
    },
    ceiling,
    acquire(signal) {
      signal?.throwIfAborted();
      return new Promise<Permit>((resolve, reject) => {
        const onAbort = (): void => {
          const index = waiting.indexOf(grant);
          if (index >= 0) waiting.splice(index, 1);
          reject(signal?.reason as Error);
        };
        function grant(): void {
          signal?.removeEventListener('abort', onAbort);
          const sentIn = epoch;
          let released = false;
          resolve({
            release(answer) {
              if (released) return;
              released = true;
              inFlight -= 1;
              adapt(answer, sentIn);
              admit();
            },
          });
        }
        waiting.push(grant);
        signal?.addEventListener('abort', onAbort, { once: true });
        admit();
      });
    },
  };
}
