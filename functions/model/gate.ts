import { ApiError, retryAfter } from '../errors';

export function overloaded(message = 'The service is busy: too many requests are waiting. Retry shortly.'): ApiError {
  return new ApiError('overloaded', message, { headers: retryAfter() });
}

interface Waiter {
  weight: number;
  start: () => void;
}

/**
 * Lets tasks run while their weights add up to at most `capacity`, and at
 * most `maxWaiting` wait in order; past that a task is refused at once with
 * 503, so load turns into quick "retry later" answers instead of memory
 * growth. A weight is 1 for a count of tasks, or bytes for a memory budget.
 * Waiters start strictly in order, so a large task is never passed over for
 * ever by a stream of small ones. A waiting task whose signal aborts (client
 * gone, timeout) leaves the queue without running.
 */
export class Gate {
  private used = 0;
  private readonly waiting: Waiter[] = [];

  constructor(
    readonly capacity: number,
    private readonly maxWaiting: number,
    private readonly refusal: () => ApiError = () => overloaded(),
  ) {}

  /** `weight` must be at most `capacity`; callers refuse larger tasks with their own message first. */
  async run<T>(task: () => Promise<T>, signal?: AbortSignal, weight = 1): Promise<T> {
    signal?.throwIfAborted();
    if (weight > this.capacity) throw new RangeError(`a task of weight ${weight} can never fit a gate of ${this.capacity}`);
    if (this.waiting.length === 0 && this.used + weight <= this.capacity) {
      this.used += weight;
    } else if (this.waiting.length >= this.maxWaiting) {
      throw this.refusal();
    } else {
      await this.wait(weight, signal);
    }
    try {
      signal?.throwIfAborted();
      return await task();
    } finally {
      this.used -= weight;
      this.startWaiters();
    }
  }

  private startWaiters(): void {
    for (let next = this.waiting[0]; next && this.used + next.weight <= this.capacity; next = this.waiting[0]) {
      this.waiting.shift();
      this.used += next.weight;
      next.start();
    }
  }

  private wait(weight: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        weight,
        start: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        const index = this.waiting.indexOf(waiter);
        if (index >= 0) this.waiting.splice(index, 1);
        // The head may have been what held the others back.
        if (index === 0) this.startWaiters();
        reject(signal?.reason as Error);
      };
      this.waiting.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
