import { ApiError, RETRY_AFTER_SECONDS } from '../errors';

export function overloaded(): ApiError {
  return new ApiError('overloaded', 'The service is busy: too many requests are waiting. Retry shortly.', {
    headers: { 'Retry-After': String(RETRY_AFTER_SECONDS) },
  });
}

/**
 * Lets at most `capacity` tasks run at once and at most `maxWaiting` wait in
 * order; past that a task is refused at once with 503, so load turns into
 * quick "retry later" answers instead of memory growth. A waiting task whose
 * signal aborts (client gone, timeout) leaves the queue without running.
 */
export class Gate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly capacity: number,
    private readonly maxWaiting: number,
  ) {}

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  async run<T>(task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    signal?.throwIfAborted();
    if (this.running < this.capacity) {
      this.running += 1;
    } else if (this.waiting.length >= this.maxWaiting) {
      throw overloaded();
    } else {
      await this.wait(signal);
    }
    try {
      signal?.throwIfAborted();
      return await task();
    } finally {
      const next = this.waiting.shift();
      // The slot passes straight to the next waiter, so `running` stays the same.
      if (next) next();
      else this.running -= 1;
    }
  }

  private wait(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const start = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const index = this.waiting.indexOf(start);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(signal?.reason as Error);
      };
      this.waiting.push(start);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
