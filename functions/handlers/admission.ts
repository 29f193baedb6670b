import type { Config } from '../config';
import { ApiError } from '../errors';
import { Gate, overloaded } from '../model/gate';
import { type CostCause, type CostEstimate, causeOfExcess } from '../pipeline/cost';
import { describeSize } from '../pipeline/size';

/**
 * The three bounds a request passes, cheapest first. URL fetches are bounded
 * on their own and happen before the others, so a slow remote server holds a
 * fetch slot, never a place in the pipeline. Then a place among the requests
 * in the pipeline (running plus waiting; 503 at once beyond), then its
 * estimated peak memory, reserved against the instance's budget; it waits in
 * order for that until it fits, holding only its compressed bytes meanwhile.
 */
export interface Admission {
  fetches: Gate;
  requests: Gate;
  memory: Gate;
}

export type AdmissionSettings = Pick<Config, 'maxConcurrentFetches' | 'maxConcurrentInferences' | 'maxQueue' | 'requestMemoryBytes'>;

export function createAdmission(settings: AdmissionSettings): Admission {
  return {
    fetches: new Gate(settings.maxConcurrentFetches, 0, () =>
      overloaded('Too many image URLs are being fetched right now: retry shortly, or upload the image instead.'),
    ),
    requests: new Gate(settings.maxConcurrentInferences + settings.maxQueue, 0),
    // Waiting here is bounded by `requests`.
    memory: new Gate(settings.requestMemoryBytes, Number.POSITIVE_INFINITY),
  };
}

const ADVICE: Record<CostCause, string> = {
  image: 'send a smaller image, or ask for a smaller size (size=preview, medium, hd or a megapixel cap such as 10MP)',
  crop_margin: 'lower crop_margin',
  scale: 'leave out scale and position, or ask for a smaller size',
  bg_image: 'send a smaller background image, or use bg_color',
  refine: 'leave out refine, or ask for a smaller size',
  quality: 'leave out quality=high',
  format: 'use format=png or jpg rather than webp, and ask for an image rather than JSON',
  semitransparency: 'leave out semitransparency=false, or ask for a smaller size',
  // Only with crop is a shadow more than a few hundred KB: the room crop keeps for it.
  shadow_type: 'leave out the shadow (shadow_type, add_shadow) or crop, or ask for a smaller size',
};

function mib(bytes: number): string {
  return `${Math.ceil(bytes / (1024 * 1024))} MiB`;
}

/** The instance's figures, so an operator reading the message knows which setting to raise. */
export interface MemoryDescription {
  memoryLimitMiB: number;
  memoryLimitSource: string;
  maskCacheBytes: number;
}

export function neverFits(cost: CostEstimate, capacity: number, memory: MemoryDescription): ApiError {
  const cause = causeOfExcess(cost, capacity);
  const parts = (Object.entries(cost.byCause) as [CostCause, number][])
    .filter(([, bytes]) => bytes > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([name, bytes]) => `${name} ${mib(bytes)}`)
    .join(', ');
  return new ApiError(
    'image_too_large',
    `This request would need about ${mib(cost.bytes)} of memory (${parts}) for a ${describeSize(cost.width, cost.height)} image, more than the ${mib(capacity)} ` +
      `this instance can give one request (${memory.memoryLimitMiB} MiB from ${memory.memoryLimitSource}, less the model` +
      `${memory.maskCacheBytes > 0 ? `, ${mib(memory.maskCacheBytes)} of mask cache (MASK_CACHE_MB)` : ''} and a margin). ` +
      `It is too large because of ${cause === 'image' ? 'the image size' : cause}: ${ADVICE[cause]}.`,
  );
}

/**
 * Runs `task` holding a place and `bytes` of the memory budget until it has
 * really finished, even when its caller has been answered (504) already.
 */
export function admit<T>(admission: Admission, bytes: number, signal: AbortSignal | undefined, task: () => Promise<T>): Promise<T> {
  return admission.requests.run(() => admission.memory.run(task, signal, bytes), signal);
}
