import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import '../functions/index';
import { alphaChannel, compareAlpha, fixture } from '../tools/lib/images';
import { bodyBytes, postImage, type RunningServer } from '../tools/lib/http';
import { startFunction } from './support/servers';

let server: RunningServer;
let referenceAlpha: Buffer;

before(async () => {
  server = await startFunction('removeBackground');
  referenceAlpha = (await removeMask(fixture('car-1.jpg'))).data;
});
after(() => server.close());

async function remove(image: Buffer, query = ''): Promise<Buffer> {
  const response = await postImage(`${server.url}${query}`, image, 'application/octet-stream');
  assert.equal(response.status, 200, await response.clone().text());
  return bodyBytes(response);
}

async function removeMask(image: Buffer): Promise<{ width: number; height: number; data: Buffer }> {
  return alphaChannel(await remove(image, '?type=mask'));
}

/** Variants of the same photo should give nearly the same cutout as the plain JPEG. */
async function assertSameCutout(variant: Buffer, minimumIou = 0.97): Promise<void> {
  const mask = await removeMask(variant);
  assert.deepEqual([mask.width, mask.height], [480, 360]);
  const { iou } = compareAlpha(mask.data, referenceAlpha);
  assert.ok(iou >= minimumIou, `IoU ${iou} against the plain JPEG`);
}

test('EXIF orientation is applied: a JPEG tagged "rotate 90" comes back upright', async () => {
  // Store the pixels rotated the other way and tag them, as a phone camera does.
  const tagged = await sharp(fixture('car-1.jpg')).rotate(-90).withMetadata({ orientation: 6 }).jpeg().toBuffer();
  const stored = await sharp(tagged).metadata();
  assert.deepEqual([stored.width, stored.height, stored.orientation], [360, 480, 6]);
  const cutout = await remove(tagged);
  const metadata = await sharp(cutout).metadata();
  assert.deepEqual([metadata.width, metadata.height], [480, 360]);
  await assertSameCutout(tagged);
});

test('a PNG with alpha keeps its transparent regions transparent', async () => {
  // A cutout uploaded again: the subject must survive and the transparent background stay so.
  const cutout = await remove(fixture('car-1.jpg'));
  const inputAlpha = (await alphaChannel(cutout)).data;
  const result = (await alphaChannel(await remove(cutout))).data;
  for (let index = 0; index < inputAlpha.length; index += 1) {
    if (inputAlpha[index] === 0) assert.equal(result[index], 0, `pixel ${index} became visible`);
  }
  const { iou } = compareAlpha(result, inputAlpha);
  assert.ok(iou >= 0.95, `IoU ${iou} against the uploaded alpha`);
});

test('grayscale, CMYK, 16-bit and palette images give the same cutout', async () => {
  const source = fixture('car-1.jpg');
  const variants: Record<string, Buffer> = {
    grayscale: await sharp(source).toColourspace('b-w').png().toBuffer(),
    cmyk: await sharp(source).toColourspace('cmyk').jpeg({ quality: 95 }).toBuffer(),
    rgb16: await sharp(source).toColourspace('rgb16').png().toBuffer(),
    palette: await sharp(source).png({ palette: true, colours: 256 }).toBuffer(),
  };
  assert.equal((await sharp(variants.grayscale).metadata()).channels, 1);
  assert.equal((await sharp(variants.cmyk).metadata()).space, 'cmyk');
  assert.equal((await sharp(variants.rgb16).metadata()).depth, 'ushort');
  for (const [name, variant] of Object.entries(variants)) {
    const cutout = await sharp(await remove(variant)).metadata();
    assert.deepEqual([cutout.channels, cutout.width, cutout.height], [4, 480, 360], name);
    // Grayscale loses colour contrast, so it may differ more.
    await assertSameCutout(variant, name === 'grayscale' ? 0.9 : 0.97);
  }
});

test('WebP, AVIF, GIF and TIFF inputs are accepted', async () => {
  const source = sharp(fixture('car-1.jpg'));
  const variants = {
    webp: await source.clone().webp().toBuffer(),
    avif: await source.clone().avif({ quality: 70 }).toBuffer(),
    gif: await source.clone().gif().toBuffer(),
    tiff: await source.clone().tiff().toBuffer(),
  };
  for (const [name, variant] of Object.entries(variants)) {
    const metadata = await sharp(await remove(variant, '?type=mask')).metadata();
    assert.deepEqual([metadata.width, metadata.height], [480, 360], name);
  }
});

test('plants-1.jpg is a PNG under a .jpg name and is decoded by content', async () => {
  const bytes = fixture('plants-1.jpg');
  assert.equal((await sharp(bytes).metadata()).format, 'png');
  const response = await postImage(server.url, bytes, 'image/jpeg');
  assert.equal(response.status, 200);
  const metadata = await sharp(await bodyBytes(response)).metadata();
  const input = await sharp(bytes).metadata();
  assert.deepEqual([metadata.width, metadata.height, metadata.channels], [input.width, input.height, 4]);
});
