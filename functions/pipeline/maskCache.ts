import { createHash } from 'node:crypto';
import type { Quality } from './options';
import type { ModelMasks } from './passes';
import type { AlphaMask } from './types';

/**
 * The model's masks at the model's resolution (the first pass's, and the
 * zoomed pass's with its box when it ran), kept per instance so that a
 * caller who tries other backgrounds, crops or formats on the same photo
 * skips preprocessing and inference. What is kept is the byte mask
 * (postprocess.ts `modelMask`): the one thing every later stage reads of the
 * model's output, so a hit gives the same bytes as a miss, in a quarter of the
 * float map's memory (1 MiB at 1024², not 4).
 */

/** Whether a removal's mask came from the cache; `off` when the instance has none (MASK_CACHE_MB=0, or the CLI). */
export type MaskCacheOutcome = 'hit' | 'miss' | 'off';

/** Everything besides the bytes that changes the model-resolution mask: what preprocess and infer read. */
export interface MaskKeyParts {
  /** The registry name of the model that ran, not the one asked for. */
  model: string;
  quality: Quality;
  /** The decoded image preprocess resizes from: `size` changes it, and with it the model's input. */
  width: number;
  height: number;
}

/**
 * The full SHA-256 of the image's bytes as received, so a mask is only ever
 * given back to a caller who sent those very bytes; nothing the caller names
 * (a URL, a file name) is part of it. The model's mean, std, input size and
 * output handling are fixed by its name for the process's life.
 */
export function maskKey(image: Buffer, parts: MaskKeyParts): string {
  const sha256 = createHash('sha256').update(image).digest('hex');
  return JSON.stringify([sha256, parts.model, parts.quality, parts.width, parts.height]);
}

/** The Map entry, the key string and the mask's object beside its pixels: small, but counted so that no entry is free. */
const ENTRY_OVERHEAD_BYTES = 256;

function entryBytes(key: string, masks: ModelMasks): number {
  return masks.mask.alpha.byteLength + (masks.zoomed?.mask.alpha.byteLength ?? 0) + key.length * 2 + ENTRY_OVERHEAD_BYTES;
}

/** A copy in a buffer of its own: no pooled slab or caller's buffer is kept alive, and nobody else can write to it. */
function copyOfMask(mask: AlphaMask): AlphaMask {
  const alpha = Buffer.allocUnsafeSlow(mask.alpha.byteLength);
  mask.alpha.copy(alpha);
  return { width: mask.width, height: mask.height, alpha };
}

function copyOf(masks: ModelMasks): ModelMasks {
  return { mask: copyOfMask(masks.mask), zoomed: masks.zoomed ? { box: { ...masks.zoomed.box }, mask: copyOfMask(masks.zoomed.mask) } : null };
}

interface Entry {
  masks: ModelMasks;
  bytes: number;
}

/**
 * Least recently used masks go first, so that the bytes held never pass
 * `capacityBytes`; a mask larger than the whole bound is not stored. Many
 * distinct images therefore only evict. Masks go in and come out as copies,
 * so a later stage that wrote to its mask could never change a cached one.
 */
export class MaskCache {
  /** In least recently used order: a Map iterates in insertion order, and a hit is re-inserted. */
  private readonly entries = new Map<string, Entry>();
  private used = 0;

  constructor(readonly capacityBytes: number) {}

  /** Bytes held now, entries' overhead included. */
  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): ModelMasks | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    this.entries.set(key, entry);
    return copyOf(entry.masks);
  }

  /** Stores a copy of `masks`, evicting as needed; false when they are larger than the whole bound. */
  set(key: string, masks: ModelMasks): boolean {
    this.remove(key);
    const bytes = entryBytes(key, masks);
    if (bytes > this.capacityBytes) return false;
    for (const [oldest] of this.entries) {
      if (this.used + bytes <= this.capacityBytes) break;
      this.remove(oldest);
    }
    this.entries.set(key, { masks: copyOf(masks), bytes });
    this.used += bytes;
    return true;
  }

  private remove(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.used -= entry.bytes;
  }
}
