/**
 * The benchmark's inputs: rembg's four fixtures and photo-like JPEGs made here
 * at fixed sizes. The generated ones are deterministic (seeded), so every run
 * and every machine measures the same bytes, and they never enter git.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { PROJECT_ROOT } from '../functions/paths';
import { fixture, SMALL_SUBJECT_FRAME, smallSubjectPhoto } from '../tools/lib/images';
import { seededRandom } from '../tools/lib/random';

export interface BenchImage {
  name: string;
  bytes: Buffer;
  width: number;
  height: number;
  contentType: string;
}

const FIXTURE_NAMES = ['anime-girl-1.jpg', 'car-1.jpg', 'cloth-1.jpg', 'plants-1.jpg'] as const;

export const GENERATED_SIZES = [
  { name: 'photo-0.3mp', width: 640, height: 480 },
  { name: 'photo-2mp', width: 1600, height: 1200 },
  { name: 'photo-12mp', width: 4000, height: 3000 },
] as const;

const CACHE_DIR = path.join(PROJECT_ROOT, 'bench', '.cache');

/** Low-frequency colour variation: a coarse random grid upscaled smoothly, like out-of-focus scenery. */
async function smoothNoise(width: number, height: number, random: () => number): Promise<Buffer> {
  const gridWidth = 16;
  const gridHeight = 12;
  const grid = Buffer.alloc(gridWidth * gridHeight * 3);
  for (let index = 0; index < grid.length; index += 1) grid[index] = Math.floor(random() * 256);
  return sharp(grid, { raw: { width: gridWidth, height: gridHeight, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'cubic' })
    .raw()
    .toBuffer();
}

/**
 * A scene a segmentation model treats like a photo: a sky-to-ground gradient
 * with soft blotches and sensor grain behind one lit, irregular blob subject
 * with a soft edge. Grain matters: it makes JPEG and PNG sizes realistic.
 */
export async function photoLikeJpeg(width: number, height: number, seed = 1): Promise<Buffer> {
  const random = seededRandom(seed);
  const blotches = await smoothNoise(width, height, random);
  const rgb = Buffer.allocUnsafe(width * height * 3);
  const centreX = width * 0.52;
  const centreY = height * 0.55;
  const radius = Math.min(width, height) * 0.32;
  const phase = random() * Math.PI * 2;
  for (let y = 0; y < height; y += 1) {
    const vertical = y / height;
    for (let x = 0; x < width; x += 1) {
      const index = (y * width + x) * 3;
      const grain = (random() - 0.5) * 14;
      const dx = x - centreX;
      const dy = y - centreY;
      const angle = Math.atan2(dy, dx);
      const edge = radius * (1 + 0.18 * Math.sin(3 * angle + phase) + 0.08 * Math.sin(7 * angle));
      // 0 outside, 1 inside, a few pixels of soft transition like a lens would give.
      const inside = Math.min(1, Math.max(0, (edge - Math.hypot(dx, dy)) / (radius * 0.01) + 0.5));
      const light = 1 - 0.5 * Math.max(0, (dx + dy) / (radius * 2.4));
      for (let channel = 0; channel < 3; channel += 1) {
        const scenery = [110 + 90 * (1 - vertical), 140 + 40 * (1 - vertical), 170 + 70 * (1 - vertical) - 80 * vertical][channel]!;
        const background = scenery * 0.7 + blotches[index + channel]! * 0.3;
        const subject = [205, 80, 45][channel]! * light + blotches[index + channel]! * 0.1;
        rgb[index + channel] = Math.min(255, Math.max(0, background + (subject - background) * inside + grain));
      }
    }
  }
  return sharp(rgb, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

/** Generated once per machine and cached under bench/.cache (gitignored): the 12 MP one takes a few seconds. */
async function generated(name: string, width: number, height: number): Promise<Buffer> {
  const file = path.join(CACHE_DIR, `${name}.jpg`);
  try {
    return readFileSync(file);
  } catch {
    const bytes = await photoLikeJpeg(width, height);
    mkdirSync(CACHE_DIR, { recursive: true });
    writeFileSync(file, bytes);
    return bytes;
  }
}

/** rembg's four fixtures, as they are on disk. */
export async function fixtureImages(): Promise<BenchImage[]> {
  const images: BenchImage[] = [];
  for (const name of FIXTURE_NAMES) {
    const bytes = fixture(name);
    const { width = 0, height = 0, format } = await sharp(bytes).metadata();
    images.push({ name: name.replace(/\.jpg$/, ''), bytes, width, height, contentType: `image/${format}` });
  }
  return images;
}

export async function benchImages(): Promise<BenchImage[]> {
  const images = await fixtureImages();
  for (const { name, width, height } of GENERATED_SIZES) {
    images.push({ name, bytes: await generated(name, width, height), width, height, contentType: 'image/jpeg' });
  }
  return images;
}

/** A subject covering about a tenth of the frame, which `quality=auto` zooms into: the default's cost where it takes its second look. */
export async function smallSubjectImage(): Promise<BenchImage> {
  return { name: 'small-subject', bytes: await smallSubjectPhoto(), ...SMALL_SUBJECT_FRAME, contentType: 'image/jpeg' };
}

export async function benchImage(name: string): Promise<BenchImage> {
  const image = (await benchImages()).find((candidate) => candidate.name === name);
  if (!image) throw new Error(`no bench image ${name}`);
  return image;
}
