import type { ModelEntry } from '../model/registry';
import type { ModelInput } from '../model/tensors';
import { inferMirrored, type RunModel } from './infer';
import type { PassPlan } from './options';
import { cleanMask } from './maskFilters';
import { fitMask, fitModelMask, modelMask } from './postprocess';
import { preprocess } from './preprocess';
import type { AlphaMask, Box, DecodedImage } from './types';

/**
 * The inference passes `quality` asks for, and how their masks combine.
 *
 * The zoomed pass (`quality=auto` and `high`): IS-Net sees every photo
 * squeezed to its square, so a subject that fills a small part of the frame
 * gets few model pixels and its mask misses limbs or blurs its outline. A
 * second inference on the subject's box alone, at the model's full square,
 * sees it larger; inside the box the two masks are merged by their maximum,
 * which keeps all the foreground the first pass found. Replacing or
 * averaging instead made some images much worse (the prototype:
 * −0.4 IoU on one), and the max never did.
 */

/** The box is the subject's (mask over half) widened by this share of its size on each side, so the model sees some context. */
export const ZOOM_MARGIN = 0.1;

/** Which inferences a removal ran: `one` plain pass, or `mirrored`, each maybe with a `zoomed` pass on the subject's box. */
export type QualityPass = 'one' | 'mirrored' | 'zoomed';

/** The model-resolution masks of one removal: the first pass's, and the zoomed pass's with the box it covers, if it ran. */
export interface ModelMasks {
  mask: AlphaMask;
  zoomed: { box: Box; mask: AlphaMask } | null;
}

/** The passes that ran, for `X-Quality` and the JSON answer. */
export function passesOf(masks: ModelMasks, plan: PassPlan): QualityPass[] {
  return [plan.mirrored ? 'mirrored' : 'one', ...(masks.zoomed ? (['zoomed'] as const) : [])];
}

/** The inferences `passesOf` stands for: two for a mirror average. */
export function inferenceCount(masks: ModelMasks, plan: PassPlan): number {
  return (plan.mirrored ? 2 : 1) + (masks.zoomed ? (plan.zoomMirrored ? 2 : 1) : 0);
}

const HALF = 128;

/**
 * The subject's box in the pixels of a `width`×`height` image, from its
 * model-resolution mask (which squeezes the image to a square): where the
 * mask is at least half, widened by ZOOM_MARGIN on each side and kept within
 * the image. Null when no pixel is.
 */
export function subjectBox(mask: AlphaMask, width: number, height: number): Box | null {
  let minX = mask.width;
  let minY = mask.height;
  let maxX = -1;
  let maxY = -1;
  for (let y = 0; y < mask.height; y += 1) {
    const row = y * mask.width;
    for (let x = 0; x < mask.width; x += 1) {
      if (mask.alpha[row + x]! < HALF) continue;
      if (x < minX) minX = x;
      if (x > maxX) maxX = x;
      if (y < minY) minY = y;
      if (y > maxY) maxY = y;
    }
  }
  if (maxX < 0) return null;
  const scaleX = width / mask.width;
  const scaleY = height / mask.height;
  const left = minX * scaleX;
  const right = (maxX + 1) * scaleX;
  const top = minY * scaleY;
  const bottom = (maxY + 1) * scaleY;
  const marginX = (right - left) * ZOOM_MARGIN;
  const marginY = (bottom - top) * ZOOM_MARGIN;
  const x0 = Math.max(0, Math.floor(left - marginX));
  const y0 = Math.max(0, Math.floor(top - marginY));
  const x1 = Math.min(width, Math.ceil(right + marginX));
  const y1 = Math.min(height, Math.ceil(bottom + marginY));
  return { left: x0, top: y0, width: x1 - x0, height: y1 - y0 };
}

/** The box to zoom into under `plan`, or null: no subject, a box as large as the image, or one above the plan's share. */
export function zoomBox(mask: AlphaMask, width: number, height: number, plan: PassPlan): Box | null {
  if (plan.zoomBelowShare <= 0) return null;
  const box = subjectBox(mask, width, height);
  if (!box) return null;
  const share = (box.width * box.height) / (width * height);
  return share < plan.zoomBelowShare ? box : null;
}

function cropPlane(plane: Buffer, width: number, channels: number, box: Box): Buffer {
  const out = Buffer.allocUnsafe(box.width * box.height * channels);
  const rowBytes = box.width * channels;
  for (let y = 0; y < box.height; y += 1) {
    const start = ((box.top + y) * width + box.left) * channels;
    plane.copy(out, y * rowBytes, start, start + rowBytes);
  }
  return out;
}

/** The part of `image` inside `box`, as an image of its own (its alpha too), for the zoomed pass's preprocess. */
export function cropImage(image: DecodedImage, box: Box): DecodedImage {
  return {
    width: box.width,
    height: box.height,
    sourceWidth: box.width,
    sourceHeight: box.height,
    rgb: cropPlane(image.rgb, image.width, 3, box),
    alpha: image.alpha ? cropPlane(image.alpha, image.width, 1, box) : null,
    format: image.format,
  };
}

/**
 * Fits the zoomed pass's mask to its box (with the image's own alpha there,
 * as fitMask applies it to the whole) and takes the per-pixel maximum with
 * `fitted`, the first pass fitted to the image, in place: the merge never
 * removes foreground the first pass found.
 */
export async function mergeZoomed(fitted: AlphaMask, zoomed: { box: Box; mask: AlphaMask }, imageAlpha: Buffer | null): Promise<AlphaMask> {
  const { box } = zoomed;
  const boxAlpha = imageAlpha ? cropPlane(imageAlpha, fitted.width, 1, box) : null;
  const inBox = await fitMask(zoomed.mask, { width: box.width, height: box.height, alpha: boxAlpha });
  for (let y = 0; y < box.height; y += 1) {
    const row = (box.top + y) * fitted.width + box.left;
    const boxRow = y * box.width;
    for (let x = 0; x < box.width; x += 1) {
      const value = inBox.alpha[boxRow + x]!;
      if (value > fitted.alpha[row + x]!) fitted.alpha[row + x] = value;
    }
  }
  return fitted;
}

function runPass(run: RunModel, input: ModelInput, mirrored: boolean): ReturnType<RunModel> {
  return mirrored ? inferMirrored(run, input) : run(input);
}

/**
 * The passes of `plan` on `image`, whose first input is already made: the
 * first pass, then, when its mask's box is small enough, the zoomed pass on
 * the box's crop. Both run inside one inference slot, so the request queues
 * once; the crop's preprocess is the only other work done in it.
 */
export async function runPasses(image: DecodedImage, input: ModelInput, entry: ModelEntry, plan: PassPlan, run: RunModel): Promise<ModelMasks> {
  const mask = modelMask(await runPass(run, input, plan.mirrored), entry.postprocess);
  const box = zoomBox(mask, image.width, image.height, plan);
  if (!box) return { mask, zoomed: null };
  const zoomInput = await preprocess(cropImage(image, box), entry);
  return { mask, zoomed: { box, mask: modelMask(await runPass(run, zoomInput, plan.zoomMirrored), entry.postprocess) } };
}

/**
 * The masks fitted to the image and merged. `clean` (`post_process`) filters
 * each pass's mask at the model's resolution, where it always ran, so the
 * merge is the union of the filtered masks; `refine` and everything after
 * read the merged mask.
 */
export async function fitModelMasks(masks: ModelMasks, image: DecodedImage, clean: boolean): Promise<AlphaMask> {
  const fitted = await fitModelMask(masks.mask, image, clean);
  if (!masks.zoomed) return fitted;
  return mergeZoomed(fitted, { box: masks.zoomed.box, mask: clean ? cleanMask(masks.zoomed.mask) : masks.zoomed.mask }, image.alpha);
}
