/** Small numeric and /proc helpers shared by the benchmark scripts. */
import { readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';

/** Linear interpolation between closest ranks, so p95 of 10 samples lies between the 9th and 10th. */
export function percentile(samples: readonly number[], fraction: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const position = (sorted.length - 1) * fraction;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return sorted[lower]! + (sorted[upper]! - sorted[lower]!) * (position - lower);
}

export function median(samples: readonly number[]): number {
  return percentile(samples, 0.5);
}

/** A table cell, right-aligned to `width`. */
export function pad(value: string | number, width: number): string {
  return String(value).padStart(width);
}

export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}

export async function timed<T>(work: () => Promise<T>): Promise<{ value: Awaited<T>; ms: number }> {
  const started = performance.now();
  const value = await work();
  return { value, ms: performance.now() - started };
}

/** `decode;dur=12.3, infer;dur=980.1` → {decode: 12.3, infer: 980.1}. */
export function parseServerTiming(header: string | null): Record<string, number> {
  const stages: Record<string, number> = {};
  for (const entry of (header ?? '').split(',')) {
    const match = /^\s*([\w-]+)\s*;\s*dur=([\d.]+)/.exec(entry);
    if (match) stages[match[1]!] = Number(match[2]);
  }
  return stages;
}

export const MIB = 1024 * 1024;

/** VmHWM (peak resident set) of a process, in MiB, from /proc. */
export function peakRssMiB(pid: number | 'self'): Promise<number> {
  return procStatusField(pid, 'VmHWM');
}

export function rssMiB(pid: number | 'self'): Promise<number> {
  return procStatusField(pid, 'VmRSS');
}

async function procStatusField(pid: number | 'self', field: string): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (!match) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(match[1]) / 1024;
}

/** Writing 5 to clear_refs resets VmHWM to the current RSS (Linux ≥ 4.0), so phases can be measured apart. */
export async function resetPeakRss(pid: number | 'self'): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5');
}

export function loadAverage(): number[] {
  return os.loadavg().map((value) => round(value, 2));
}
