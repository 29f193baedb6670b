/**
 * quality's passes: the subject's box and the zoom decision on their own,
 * the merge's promise (it never removes foreground the first pass found),
 * and, on the real model over HTTP, a small subject zoomed and a large one
 * not, both passes inside one inference slot, X-Quality and the JSON answer.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { loadConfig } from '../functions/config';
import type { ModelLoader } from '../functions/model/holder';
import { PASS_PLANS } from '../functions/pipeline/options';
import { cropImage, mergeZoomed, subjectBox, zoomBox } from '../functions/pipeline/passes';
import type { AlphaMask, DecodedImage } from '../functions/pipeline/types';
import { fixture, smallSubjectPhoto } from '../tools/lib/images';
import { seededRandom } from '../tools/lib/random';
import { bodyBytes, postImage, type RunningServer } from '../tools/lib/http';
import { modelBeforeEachRun } from './support/heldModel';
import { startLocalServer } from './support/servers';

/** A square model mask with one rectangle of `value`, in the mask's own pixels. */
function squareMask(size: number, rectangle: { left: number; top: number; width: number; height: number }, value = 255): AlphaMask {
  const alpha = Buffer.alloc(size * size);
  for (let y = rectangle.top; y < rectangle.top + rectangle.height; y += 1) alpha.fill(value, y * size + rectangle.left, y * size + rectangle.left + rectangle.width);
  return { width: size, height: size, alpha };
}

test('the subject box is where the mask is over half, mapped from the square to the image and widened by 10% a side, within the image', () => {
  // 10x10 square over a 200x100 image: each mask pixel is 20x10 image pixels.
  const box = subjectBox(squareMask(10, { left: 4, top: 2, width: 2, height: 5 }), 200, 100)!;
  // Mask columns 4-5 are image x 80-120 (40 wide, 4 either side); rows 2-6 are y 20-70 (50 high, 5 either side).
  assert.deepEqual(box, { left: 76, top: 15, width: 48, height: 60 });
  assert.deepEqual(subjectBox(squareMask(10, { left: 0, top: 0, width: 10, height: 10 }), 200, 100), { left: 0, top: 0, width: 200, height: 100 });
  assert.equal(subjectBox(squareMask(10, { left: 4, top: 2, width: 2, height: 5 }, 127), 200, 100), null, 'under half is not the subject');
  assert.equal(subjectBox(squareMask(10, { left: 0, top: 0, width: 0, height: 0 }), 200, 100), null);
});

test('fast never zooms; auto and high only below their share of the image', () => {
  const small = squareMask(10, { left: 4, top: 4, width: 2, height: 2 });
  const large = squareMask(10, { left: 1, top: 1, width: 8, height: 8 });
  const whole = squareMask(10, { left: 0, top: 0, width: 10, height: 10 });
  assert.equal(zoomBox(small, 100, 100, PASS_PLANS.fast), null);
  assert.ok(zoomBox(small, 100, 100, PASS_PLANS.auto));
  assert.equal(zoomBox(large, 100, 100, PASS_PLANS.auto), null);
  assert.equal(zoomBox(large, 100, 100, PASS_PLANS.high), null);
  assert.ok(zoomBox(small, 100, 100, PASS_PLANS.high));
  assert.equal(zoomBox(whole, 100, 100, { ...PASS_PLANS.high, zoomBelowShare: 1 }), null, 'a box as large as the image would only repeat the first pass');
});

test('the crop is the box\'s pixels, alpha too', () => {
  const width = 5;
  const image: DecodedImage = {
    width,
    height: 4,
    sourceWidth: width,
    sourceHeight: 4,
    rgb: Buffer.from(Array.from({ length: width * 4 * 3 }, (_, index) => index)),
    alpha: Buffer.from(Array.from({ length: width * 4 }, (_, index) => index)),
    format: 'raw',
  };
  const crop = cropImage(image, { left: 1, top: 2, width: 2, height: 2 });
  assert.deepEqual([crop.width, crop.height], [2, 2]);
  assert.deepEqual([...crop.alpha!], [11, 12, 16, 17]);
  assert.deepEqual([...crop.rgb.subarray(0, 6)], [33, 34, 35, 36, 37, 38]);
});

test('the merge takes the maximum inside the box and leaves the rest: it never lowers the first pass', async () => {
  const random = seededRandom(15);
  const width = 64;
  const height = 48;
  for (let round = 0; round < 20; round += 1) {
    const first = Buffer.from(Array.from({ length: width * height }, () => Math.floor(random() * 256)));
    const fitted: AlphaMask = { width, height, alpha: Buffer.from(first) };
    const box = { left: Math.floor(random() * 30), top: Math.floor(random() * 20), width: 1 + Math.floor(random() * 30), height: 1 + Math.floor(random() * 25) };
    const zoomed = { box, mask: { width: 16, height: 16, alpha: Buffer.from(Array.from({ length: 256 }, () => Math.floor(random() * 256))) } };
    const merged = await mergeZoomed(fitted, zoomed, null);
    let raised = 0;
    for (let pixel = 0; pixel < first.length; pixel += 1) {
      const x = pixel % width;
      const y = Math.floor(pixel / width);
      const inBox = x >= box.left && x < box.left + box.width && y >= box.top && y < box.top + box.height;
      assert.ok(merged.alpha[pixel]! >= first[pixel]!, `pixel ${pixel} lowered`);
      if (!inBox) assert.equal(merged.alpha[pixel], first[pixel], `pixel ${pixel} outside the box changed`);
      else if (merged.alpha[pixel]! > first[pixel]!) raised += 1;
    }
    assert.ok(raised > 0, 'the zoomed mask raised some pixel inside the box');
  }
});

/** The real model, with each inference tagged by the inference slot it ran in. */
function slotTaggingLoader(): { loader: ModelLoader; runs: number[]; enterSlot: () => void; slot: { current: number } } {
  const runs: number[] = [];
  const slot = { current: 0 };
  return {
    loader: modelBeforeEachRun(() => {
      runs.push(slot.current);
    }),
    runs,
    enterSlot: () => {
      slot.current += 1;
    },
    slot,
  };
}

let server: RunningServer & Awaited<ReturnType<typeof startLocalServer>>;
let tagging: ReturnType<typeof slotTaggingLoader>;
let small: Buffer;

before(async () => {
  tagging = slotTaggingLoader();
  server = await startLocalServer(loadConfig({ PORT: '0', MASK_CACHE_MB: '0' }), tagging.loader);
  // Each call of runInference is one slot: tag the inferences that run inside it.
  const holder = server.detourage.holder;
  const runInference = holder.runInference.bind(holder);
  holder.runInference = (task, signal) =>
    runInference(() => {
      tagging.enterSlot();
      return task();
    }, signal);
  small = await smallSubjectPhoto();
});
after(() => server.close());

async function remove(query: string, image: Buffer, accept?: string) {
  const headers = { 'content-type': 'image/jpeg', ...(accept ? { accept } : {}) };
  const response = await postImage(`${server.url}/remove-background?${query}`, image, 'image/jpeg', { headers });
  const body = await bodyBytes(response);
  assert.equal(response.status, 200, body.toString());
  return { body, quality: response.headers.get('x-quality'), timing: response.headers.get('server-timing') ?? '' };
}

test('quality=auto zooms into a small subject, in the same inference slot as its first pass', async () => {
  const before = tagging.runs.length;
  const answer = await remove('quality=auto', small);
  assert.equal(answer.quality, 'one,zoomed');
  const runs = tagging.runs.slice(before);
  assert.equal(runs.length, 2, 'two inferences');
  assert.equal(runs[0], runs[1], 'both in one slot');
  assert.equal((answer.timing.match(/queue;/g) ?? []).length, 1, 'one queue entry in Server-Timing');
});

test('quality=auto leaves a large subject at one pass; fast is always one', async () => {
  const before = tagging.runs.length;
  assert.equal((await remove('quality=auto', fixture('anime-girl-1.jpg'))).quality, 'one');
  assert.equal((await remove('quality=fast', small)).quality, 'one');
  assert.equal(tagging.runs.length - before, 2);
});

test('quality=high is the mirror average plus the zoomed pass, three inferences in one slot', async () => {
  const before = tagging.runs.length;
  assert.equal((await remove('quality=high', small)).quality, 'mirrored,zoomed');
  const runs = tagging.runs.slice(before);
  assert.equal(runs.length, 3);
  assert.equal(new Set(runs).size, 1);
});

test('the zoomed matte is the one-pass matte or more at every pixel, and differs from it', async () => {
  const alphaOf = async (query: string): Promise<Buffer> => sharp((await remove(`${query}&channels=alpha&format=png`, small)).body).extractChannel(0).raw().toBuffer();
  const [fast, auto] = [await alphaOf('quality=fast'), await alphaOf('quality=auto')];
  assert.equal(fast.length, auto.length);
  let raised = 0;
  for (let pixel = 0; pixel < fast.length; pixel += 1) {
    assert.ok(auto[pixel]! >= fast[pixel]!, `pixel ${pixel}: ${auto[pixel]} < ${fast[pixel]}`);
    if (auto[pixel]! > fast[pixel]!) raised += 1;
  }
  assert.ok(raised > 100, `the zoomed pass added foreground: ${raised} pixels`);
});

test('the JSON answer lists the passes', async () => {
  const answer = await remove('quality=auto', small, 'application/json');
  const json = JSON.parse(answer.body.toString()) as { data: { passes: string[] } };
  assert.deepEqual(json.data.passes, ['one', 'zoomed']);
  assert.equal(answer.quality, 'one,zoomed');
});
