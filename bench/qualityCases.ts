/**
 * The cases `npm run bench:quality` scores masks on (bench/quality.ts and
 * bench/qualityPasses.ts): the truth they are scored against, and the
 * composites made by pasting a subject by its known alpha onto a new
 * background, so the composite's alpha and foreground colours are known
 * exactly.
 */
import { boxMean } from '../functions/pipeline/planes';
import { sharp } from '../functions/pipeline/sharp';
import type { DecodedImage, RgbImage } from '../functions/pipeline/types';
import { fixture } from '../tools/lib/images';
import { seededRandom } from '../tools/lib/random';

export const MAX_PIXELS = { maxInputPixels: Number.MAX_SAFE_INTEGER };

/**
 * parity: rembg's own output is the truth. soft: composites whose truth is a
 * model-made (soft-edged) alpha. hard: the same composites with that alpha
 * thresholded, like a hard-edged product shot: there a sharper, image-aligned
 * edge is right, which is what refine is for. small: a subject shrunk onto a
 * larger frame (smallSubjectCases), scored by bench/qualityPasses.ts.
 */
export type Group = 'parity' | 'soft' | 'hard' | 'small';
export const GROUPS: readonly Group[] = ['soft', 'hard', 'parity'];

export interface Case {
  name: string;
  group: Group;
  image: DecodedImage;
  /** Ground-truth alpha at the image's size. */
  alpha: Buffer;
  /** The true foreground colours (composites only). */
  foreground: Buffer | null;
}

export type Background = (width: number, height: number) => Promise<Buffer>;

/** New backgrounds: a real cluttered photo, a smooth gradient, and coloured noise. */
export const BACKGROUNDS: Record<string, Background> = {
  plants: (width, height) => sharp(fixture('plants-1.jpg')).resize(width, height, { fit: 'cover' }).removeAlpha().raw().toBuffer(),
  gradient: (width, height) => {
    const rgb = Buffer.allocUnsafe(width * height * 3);
    for (let y = 0; y < height; y += 1) {
      for (let x = 0; x < width; x += 1) {
        const index = (y * width + x) * 3;
        rgb[index] = 40 + (180 * x) / width;
        rgb[index + 1] = 200 - (150 * y) / height;
        rgb[index + 2] = 90 + (120 * (x + y)) / (width + height);
      }
    }
    return Promise.resolve(rgb);
  },
  noise: async (width, height) => {
    const random = seededRandom(7);
    const coarse = Buffer.from(Array.from({ length: 40 * 30 * 3 }, () => Math.floor(random() * 256)));
    const blotches = await sharp(coarse, { raw: { width: 40, height: 30, channels: 3 } }).resize(width, height, { fit: 'fill', kernel: 'cubic' }).raw().toBuffer();
    for (let index = 0; index < blotches.length; index += 1) blotches[index] = Math.min(255, Math.max(0, blotches[index]! + (random() - 0.5) * 60));
    return blotches;
  },
};

export function composite(foreground: Buffer, alpha: Buffer, background: Buffer): Buffer {
  const out = Buffer.allocUnsafe(foreground.length);
  for (let pixel = 0; pixel < alpha.length; pixel += 1) {
    const keep = alpha[pixel]! / 255;
    for (let channel = 0, index = pixel * 3; channel < 3; channel += 1, index += 1) {
      out[index] = background[index]! + (foreground[index]! - background[index]!) * keep + 0.5;
    }
  }
  return out;
}

/** Opaque enough that the photo's colour there is taken as the subject's own. */
const OPAQUE = 250;
const FILL_RADII = [8, 64];

/**
 * A foreground with no background in it: the photo where the subject is
 * opaque, and elsewhere the mean colour of the opaque pixels nearby. The
 * photo's own colours under a soft edge already mix in its old background,
 * so they cannot serve as the truth a decontamination is scored against.
 */
export function pureForeground(photo: RgbImage, alpha: Buffer): Buffer {
  const { width, height, rgb } = photo;
  const count = width * height;
  const out = Buffer.from(rgb);
  const filled = new Uint8Array(count);
  for (let pixel = 0; pixel < count; pixel += 1) filled[pixel] = alpha[pixel]! >= OPAQUE ? 1 : 0;
  for (const radius of FILL_RADII) {
    const weight = Float32Array.from(alpha, (a) => (a >= OPAQUE ? 1 : 0));
    const channels = [0, 1, 2].map((channel) => Float32Array.from({ length: count }, (_, pixel) => (alpha[pixel]! >= OPAQUE ? rgb[pixel * 3 + channel]! : 0)));
    for (const plane of [weight, ...channels]) boxMean(plane, width, height, radius, plane);
    for (let pixel = 0; pixel < count; pixel += 1) {
      if (filled[pixel] === 1 || weight[pixel]! < 1e-3) continue;
      for (let channel = 0; channel < 3; channel += 1) out[pixel * 3 + channel] = channels[channel]![pixel]! / weight[pixel]! + 0.5;
      filled[pixel] = 1;
    }
  }
  return out;
}

/** A fixture photo's subject: its alpha (the truth) and its colours with no background in them. */
export interface Subject {
  name: string;
  photo: RgbImage;
  alpha: Buffer;
  foreground: Buffer;
}

/** How small the subject is made, as a share of the frame's width and height, and where its box's left edge goes. */
const SMALL_PLACEMENTS = [
  { scale: 0.45, left: 0.08 },
  { scale: 0.3, left: 0.6 },
] as const;
const SMALL_BACKGROUNDS = ['plants', 'noise', 'gradient'] as const;

async function resizePlane(plane: Buffer, width: number, height: number, channels: 1 | 3, toWidth: number, toHeight: number): Promise<Buffer> {
  const resized = sharp(plane, { raw: { width, height, channels } }).resize(toWidth, toHeight, { fit: 'fill', kernel: 'lanczos3' });
  // A resized 1-channel raw image comes back with 3 channels unless told otherwise.
  return (channels === 1 ? resized.extractChannel(0) : resized).raw().toBuffer();
}

/**
 * The case issue 15 is about: the subject shrunk onto a frame of the photo's
 * own size, so its box covers a small share of it (about 10-30% with the
 * margin), on three backgrounds. The truth is the subject's own alpha shrunk
 * alike: what the model found when it saw the subject large, or rembg's.
 */
export async function smallSubjectCases(subjects: readonly Subject[]): Promise<Case[]> {
  const cases: Case[] = [];
  for (const subject of subjects) {
    const { width, height } = subject.photo;
    for (const placement of SMALL_PLACEMENTS) {
      const small = { width: Math.round(width * placement.scale), height: Math.round(height * placement.scale) };
      const left = Math.round(width * placement.left);
      const top = height - small.height - Math.round(height * 0.05);
      const smallAlpha = await resizePlane(subject.alpha, width, height, 1, small.width, small.height);
      const smallForeground = await resizePlane(subject.foreground, width, height, 3, small.width, small.height);
      const alpha = Buffer.alloc(width * height);
      const foreground = Buffer.alloc(width * height * 3);
      for (let y = 0; y < small.height; y += 1) {
        smallAlpha.copy(alpha, (top + y) * width + left, y * small.width, (y + 1) * small.width);
        smallForeground.copy(foreground, ((top + y) * width + left) * 3, y * small.width * 3, (y + 1) * small.width * 3);
      }
      for (const backgroundName of SMALL_BACKGROUNDS) {
        const background = await BACKGROUNDS[backgroundName]!(width, height);
        cases.push({
          name: `${subject.name} at ${placement.scale} on ${backgroundName}`,
          group: 'small',
          image: { width, height, sourceWidth: width, sourceHeight: height, rgb: composite(foreground, alpha, background), alpha: null, format: 'raw' },
          alpha,
          foreground,
        });
      }
    }
  }
  return cases;
}

/** Pixels within `radius` of the truth's outline (alpha 128): where a soft or a hard edge is, the band its colour error is taken over. */
export function edgeBand(alpha: Buffer, width: number, height: number, radius = 2): Uint8Array {
  const inside = Float32Array.from(alpha, (value) => (value >= 128 ? 1 : 0));
  boxMean(inside, width, height, radius, inside);
  return Uint8Array.from(inside, (share) => (share > 1e-4 && share < 1 - 1e-4 ? 1 : 0));
}

/**
 * Mean |α̂·I − α·F| over the edge band, in levels of 0–255: the colour error of
 * the cutout (the image's own colours under the predicted alpha) composited
 * over black, against the true foreground under the true alpha.
 */
export function edgeColourError(image: RgbImage, predicted: Buffer, truth: Buffer, foreground: Buffer): number {
  const band = edgeBand(truth, image.width, image.height);
  let error = 0;
  let count = 0;
  for (let pixel = 0; pixel < band.length; pixel += 1) {
    if (band[pixel] === 0) continue;
    const estimated = predicted[pixel]! / 255;
    const actual = truth[pixel]! / 255;
    for (let channel = 0, index = pixel * 3; channel < 3; channel += 1, index += 1) error += Math.abs(estimated * image.rgb[index]! - actual * foreground[index]!);
    count += 3;
  }
  return count === 0 ? 0 : error / count;
}
