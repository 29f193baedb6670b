/** Interleaved RGBA split into RGB and alpha planes, as the stages pass them. */
export function splitRgba(rgba: Buffer, pixelCount: number): { rgb: Buffer; alpha: Buffer } {
  const rgb = Buffer.allocUnsafe(pixelCount * 3);
  const alpha = Buffer.allocUnsafe(pixelCount);
  for (let pixel = 0, source = 0, target = 0; pixel < pixelCount; pixel += 1, source += 4, target += 3) {
    rgb[target] = rgba[source]!;
    rgb[target + 1] = rgba[source + 1]!;
    rgb[target + 2] = rgba[source + 2]!;
    alpha[pixel] = rgba[source + 3]!;
  }
  return { rgb, alpha };
}

export function isOpaque(alpha: Buffer): boolean {
  for (let pixel = 0; pixel < alpha.length; pixel += 1) if (alpha[pixel] !== 255) return false;
  return true;
}
