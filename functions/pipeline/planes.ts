/**
 * Box means and integer-factor resampling on float planes: the building
 * blocks of the guided filter and of foreground estimation. Everything is a
 * running sum, so the cost does not depend on the radius.
 */

/**
 * Mean over the (2·radius+1)² window clipped to the plane: border pixels
 * average fewer values rather than invented ones. `target` may be `source`.
 * `scratch` (width·height floats) is reused by callers that filter many planes.
 */
export function boxMean(source: Float32Array, width: number, height: number, radius: number, target: Float32Array, scratch = new Float32Array(width * height)): void {
  for (let y = 0, row = 0; y < height; y += 1, row += width) {
    let sum = 0;
    for (let x = 0; x < Math.min(radius, width); x += 1) sum += source[row + x]!;
    for (let x = 0; x < width; x += 1) {
      const add = x + radius;
      const remove = x - radius - 1;
      if (add < width) sum += source[row + add]!;
      if (remove >= 0) sum -= source[row + remove]!;
      scratch[row + x] = sum / (Math.min(add, width - 1) - Math.max(x - radius, 0) + 1);
    }
  }
  // Column sums kept in doubles: a float32 running sum drifts over thousands of rows.
  const columns = new Float64Array(width);
  for (let y = 0; y < Math.min(radius, height); y += 1) {
    for (let x = 0, index = y * width; x < width; x += 1, index += 1) columns[x]! += scratch[index]!;
  }
  for (let y = 0; y < height; y += 1) {
    const add = y + radius;
    const remove = y - radius - 1;
    if (add < height) for (let x = 0, index = add * width; x < width; x += 1, index += 1) columns[x]! += scratch[index]!;
    if (remove >= 0) for (let x = 0, index = remove * width; x < width; x += 1, index += 1) columns[x]! -= scratch[index]!;
    const inverseCount = 1 / (Math.min(add, height - 1) - Math.max(y - radius, 0) + 1);
    for (let x = 0, index = y * width; x < width; x += 1, index += 1) target[index] = columns[x]! * inverseCount;
  }
}

/** How a full-resolution grid maps onto a grid `factor` times coarser, along one axis. */
export interface AxisWeights {
  /** The coarse cell on either side of each full-resolution pixel's centre. */
  lower: Int32Array;
  upper: Int32Array;
  /** Weight of `upper`; `lower` gets 1 − weight. */
  weight: Float32Array;
}

export function coarseSize(fullSize: number, factor: number): number {
  return Math.ceil(fullSize / factor);
}

/** Bilinear weights for sampling coarse cells (each covering `factor` pixels) at every full-resolution pixel centre. */
export function axisWeights(fullSize: number, factor: number): AxisWeights {
  const coarse = coarseSize(fullSize, factor);
  const lower = new Int32Array(fullSize);
  const upper = new Int32Array(fullSize);
  const weight = new Float32Array(fullSize);
  for (let index = 0; index < fullSize; index += 1) {
    const position = Math.min(Math.max((index + 0.5) / factor - 0.5, 0), coarse - 1);
    const low = Math.floor(position);
    lower[index] = low;
    upper[index] = Math.min(low + 1, coarse - 1);
    weight[index] = position - low;
  }
  return { lower, upper, weight };
}

/** The four coarse cells around one full-resolution pixel and its weights, filled by `locate`. */
export interface CoarseSample {
  topLeft: number;
  topRight: number;
  bottomLeft: number;
  bottomRight: number;
  across: number;
  down: number;
}

export function locate(sample: CoarseSample, coarseWidth: number, columns: AxisWeights, rows: AxisWeights, x: number, y: number): void {
  const upper = rows.lower[y]! * coarseWidth;
  const lower = rows.upper[y]! * coarseWidth;
  sample.topLeft = upper + columns.lower[x]!;
  sample.topRight = upper + columns.upper[x]!;
  sample.bottomLeft = lower + columns.lower[x]!;
  sample.bottomRight = lower + columns.upper[x]!;
  sample.across = columns.weight[x]!;
  sample.down = rows.weight[y]!;
}

/** Bilinear value of a coarse plane at a located pixel. */
export function bilinear(plane: Float32Array, at: CoarseSample): number {
  const upper = plane[at.topLeft]! + (plane[at.topRight]! - plane[at.topLeft]!) * at.across;
  const lower = plane[at.bottomLeft]! + (plane[at.bottomRight]! - plane[at.bottomLeft]!) * at.across;
  return upper + (lower - upper) * at.down;
}

/** The coarse plane interpolated between the two coarse rows around full-resolution row y. */
export function lerpRows(plane: Float32Array, coarseWidth: number, rows: AxisWeights, y: number, target: Float32Array): void {
  const upper = rows.lower[y]! * coarseWidth;
  const lower = rows.upper[y]! * coarseWidth;
  const down = rows.weight[y]!;
  for (let x = 0; x < coarseWidth; x += 1) target[x] = plane[upper + x]! + (plane[lower + x]! - plane[upper + x]!) * down;
}

/** The coarse cell of each full-resolution index along one axis. */
export function cellIndex(fullSize: number, factor: number): Int32Array {
  const cells = new Int32Array(fullSize);
  for (let index = 0; index < fullSize; index += 1) cells[index] = Math.floor(index / factor);
  return cells;
}

/** Turns per-cell sums into means in place; the last row and column of cells may cover fewer pixels. */
export function divideByCellArea(sums: readonly Float32Array[], width: number, height: number, factor: number): void {
  const coarseWidth = coarseSize(width, factor);
  const coarseHeight = coarseSize(height, factor);
  for (let cellY = 0; cellY < coarseHeight; cellY += 1) {
    const rows = Math.min(factor, height - cellY * factor);
    for (let cellX = 0; cellX < coarseWidth; cellX += 1) {
      const inverseArea = 1 / (rows * Math.min(factor, width - cellX * factor));
      const cell = cellY * coarseWidth + cellX;
      for (const plane of sums) plane[cell]! *= inverseArea;
    }
  }
}
