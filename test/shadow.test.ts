/**
 * remove.bg's shadow and semitransparency parameters: the pure stages on
 * synthetic mattes, then the real model through real HTTP, one server for
 * the file. Each model request is a second or two, so the requests are few
 * and each is asked several questions.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import type { Services } from '../functions/app';
import { loadConfig } from '../functions/config';
import { estimateRemoval } from '../functions/pipeline/cost';
import { layout } from '../functions/pipeline/layout';
import { hardenInterior } from '../functions/pipeline/maskFilters';
import { castShadow, shadowReach } from '../functions/pipeline/shadow';
import type { Box } from '../functions/pipeline/types';
import { parseRemovalOptions } from '../functions/request/options';
import { alphaChannel, fixture, rawPixels } from '../tools/lib/images';
import { bodyBytes, postForm, postImage, type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';
import { readZip } from './support/zip';

const CAR = fixture('car-1.jpg');

let service: RunningServer & { detourage: Services };
let removal: string;

before(async () => {
  service = await startLocalServer(loadConfig({ ...process.env, PORT: '0' }));
  removal = `${service.url}/remove-background`;
});
after(() => service.close());

function filledBox(width: number, height: number, box: Box): Buffer {
  const alpha = Buffer.alloc(width * height);
  for (let y = box.top; y < box.top + box.height; y += 1) alpha.fill(255, y * width + box.left, y * width + box.left + box.width);
  return alpha;
}

test('castShadow draws only within shadowReach of the subject, and crop keeps that much room, as the estimate assumes', async () => {
  const [width, height] = [300, 200];
  const subject: Box = { left: 60, top: 40, width: 150, height: 100 };
  const alpha = filledBox(width, height, subject);
  const rgb = Buffer.alloc(width * height * 3, 200);
  castShadow({ image: { width, height, rgb }, mask: { width, height, alpha }, foreground: subject }, { opacity: 1 });
  const reach = shadowReach(subject);
  let [right, bottom, left, top] = [-1, -1, width, height];
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const pixel = y * width + x;
      const inside = x >= subject.left && x < subject.left + subject.width && y >= subject.top && y < subject.top + subject.height;
      if (inside) {
        assert.equal(alpha[pixel], 255, 'the subject stays opaque');
        assert.equal(rgb[pixel * 3], 200, 'and keeps its colour');
      } else if (alpha[pixel]! > 0) {
        assert.equal(rgb[pixel * 3], 0, 'where only the shadow is, it is black');
        [right, bottom, left, top] = [Math.max(right, x), Math.max(bottom, y), Math.min(left, x), Math.min(top, y)];
      }
    }
  }
  assert.ok(right >= subject.left + subject.width && bottom >= subject.top + subject.height, 'the shadow shows below and right');
  assert.ok(right < subject.left + subject.width + reach.right && bottom < subject.top + subject.height + reach.bottom);
  assert.ok(left >= subject.left - reach.left && top >= subject.top - reach.top);
  assert.ok(reach.right > reach.left, 'it falls down and right');

  // A subject filling the frame is the estimate's worst case: layout's crop canvas must be exactly that.
  const frame = { width: 400, height: 250 };
  const full = Buffer.alloc(frame.width * frame.height, 255);
  const options = parseRemovalOptions({ crop: 'true', shadow_type: 'drop' });
  const laidOut = await layout({ ...frame, rgb: Buffer.alloc(frame.width * frame.height * 3) }, { ...frame, alpha: full }, options.layout);
  const fullReach = shadowReach(frame);
  assert.deepEqual([laidOut.image.width, laidOut.image.height], [frame.width + fullReach.left + fullReach.right, frame.height + fullReach.top + fullReach.bottom]);
  const header = { format: 'png', ...frame, hasAlpha: false, rotated: false, bytes: 1 };
  const estimate = (parameters: Record<string, string>): ReturnType<typeof estimateRemoval> =>
    estimateRemoval({ image: header, background: null, options: parseRemovalOptions(parameters), model: { inputSize: 1024 }, maxOutputPixels: 1e9, json: false });
  const withShadow = estimate({ crop: 'true', shadow_type: 'drop' });
  const without = estimate({ crop: 'true' });
  assert.equal(withShadow.canvasPixels, laidOut.image.width * laidOut.image.height);
  assert.equal(withShadow.bytes - without.bytes, withShadow.byCause.shadow_type, 'the shadow is charged what it adds, to shadow_type');
  assert.deepEqual(parseRemovalOptions({}).layout.shadow, false);
});

test('hardenInterior leaves a soft band along the outline and makes the rest 0 or 255', () => {
  const [width, height] = [40, 40];
  const alpha = filledBox(width, height, { left: 10, top: 10, width: 20, height: 20 });
  // A soft outline one pixel wide, a translucent window well inside, and haze well outside.
  for (let x = 10; x < 30; x += 1) alpha[9 * width + x] = 100;
  for (let y = 16; y < 24; y += 1) alpha.fill(90, y * width + 16, y * width + 24);
  alpha[2 * width + 2] = 9;
  alpha[13 * width + 13] = 200;
  hardenInterior({ width, height, alpha }, 2);
  assert.equal(alpha[9 * width + 15], 100, 'the outline stays soft');
  assert.equal(alpha[2 * width + 2], 0, 'the haze goes');
  assert.equal(alpha[20 * width + 20], 0, 'a window below one half becomes clear');
  assert.equal(alpha[13 * width + 13], 255, 'a soft pixel above one half, inside, becomes opaque');
});

async function expectImage(response: Response, contentType: string): Promise<Buffer> {
  const body = await bodyBytes(response);
  assert.equal(response.status, 200, body.toString());
  assert.equal(response.headers.get('content-type'), contentType);
  return body;
}

async function matte(query: string): Promise<{ alpha: Buffer; width: number; height: number; box: string }> {
  const response = await postImage(`${removal}?channels=alpha&${query}`, CAR);
  const { data, width, height } = await alphaChannel(await expectImage(response, 'image/png'));
  const box = ['top', 'left', 'width', 'height'].map((side) => response.headers.get(`x-foreground-${side}`)).join(',');
  return { alpha: data, width, height, box };
}

/** The default matte and the default shadow's, shared by the tests below. */
let baseline: Promise<Awaited<ReturnType<typeof matte>>> | undefined;
let dropped: Promise<Awaited<ReturnType<typeof matte>>> | undefined;
const baseMatte = (): ReturnType<typeof matte> => (baseline ??= matte(''));
const shadowMatte = (): ReturnType<typeof matte> => (dropped ??= matte('shadow_type=drop'));

/** Pixels that were clear without a shadow and are not with it: where the shadow alone shows. */
function shadowOnly(base: Buffer, shadow: Buffer): number[] {
  const pixels: number[] = [];
  for (let pixel = 0; pixel < base.length; pixel += 1) if (base[pixel] === 0 && shadow[pixel]! > 0) pixels.push(pixel);
  return pixels;
}

test('shadow_type draws a shadow below and right of the subject at shadow_opacity; none, 0 and add_shadow as documented', async () => {
  const base = await baseMatte();
  const shadow = await shadowMatte();
  assert.equal(shadow.box, base.box, 'the foreground box stays the subject\'s');
  const [top, left, width, height] = base.box.split(',').map(Number) as [number, number, number, number];
  const only = shadowOnly(base.alpha, shadow.alpha);
  const belowRight = only.filter((pixel) => pixel % base.width >= left + width / 2 && Math.floor(pixel / base.width) >= top + height / 2);
  assert.ok(belowRight.length > 500, `${belowRight.length} clear pixels below and right of the subject's centre gain the shadow`);
  let added = 0;
  for (let pixel = 0; pixel < base.alpha.length; pixel += 1) {
    assert.ok(shadow.alpha[pixel]! >= base.alpha[pixel]!, 'a shadow only adds');
    if (base.alpha[pixel] === 255) assert.equal(shadow.alpha[pixel], 255);
    added += shadow.alpha[pixel]! - base.alpha[pixel]!;
  }

  // remove.bg clients send JSON numbers; `car` and `3D` are the same shadow as `drop`.
  const json = { image_file_b64: CAR.toString('base64'), channels: 'alpha', shadow_type: 'car', shadow_opacity: 100 };
  const opaque = await fetch(removal, { method: 'POST', body: JSON.stringify(json), headers: { 'content-type': 'application/json' } });
  const opaqueAlpha = (await alphaChannel(await expectImage(opaque, 'image/png'))).data;
  const opaqueAdded = opaqueAlpha.reduce((sum, value, pixel) => sum + value - base.alpha[pixel]!, 0);
  assert.ok(opaqueAdded > added * 1.5, `opacity 100 adds ${opaqueAdded}, the default 50 ${added}`);

  assert.deepEqual((await matte('add_shadow=true')).alpha, shadow.alpha, 'add_shadow=true is shadow_type=drop');
  assert.deepEqual((await matte('add_shadow=true&shadow_type=none')).alpha, base.alpha, 'shadow_type=none wins over add_shadow');
  // Options equal to the defaults run the same pipeline, so these need no model.
  const defaults = parseRemovalOptions({});
  assert.deepEqual(parseRemovalOptions({ shadow_type: '3D', shadow_opacity: '0' }), defaults, 'opacity 0 is no shadow');
  assert.deepEqual(parseRemovalOptions({ shadow_opacity: '80' }), defaults, 'an opacity without a shadow is none');
  assert.deepEqual(parseRemovalOptions({ type_level: 'latest', semitransparency: 'true' }), defaults, 'type_level changes nothing');
});

test('the shadow is in every format, under the cutout and over the background, and crop keeps room for it', async () => {
  const base = await baseMatte();
  const only = shadowOnly(base.alpha, (await shadowMatte()).alpha);
  const mean = (data: Buffer, channels: number, channel: number): number =>
    only.reduce((sum, pixel) => sum + data[pixel * channels + channel]!, 0) / only.length;

  const jpeg = await rawPixels(await expectImage(await postImage(`${removal}?format=jpg&shadow_type=drop`, CAR), 'image/jpeg'));
  // Clear pixels are white in a JPEG; under the shadow they are darker.
  assert.ok(mean(jpeg.data, 3, 0) < 235, `JPEG red under the shadow ${mean(jpeg.data, 3, 0)}`);

  const blue = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#0000ff' } }).png().toBuffer();
  const webp = await rawPixels(await expectImage(await postForm(removal, { image_file: CAR, bg_image_file: blue, format: 'webp', shadow_type: 'drop' }), 'image/webp'));
  assert.ok(mean(webp.data, webp.channels, 2) < 235, `the blue background is darker under the shadow: ${mean(webp.data, webp.channels, 2)}`);

  const zip = readZip(await expectImage(await postImage(`${removal}?format=zip&shadow_type=drop`, CAR), 'application/zip'));
  assert.deepEqual((await alphaChannel(zip.get('alpha.png')!)).data, (await shadowMatte()).alpha, 'alpha.png holds the shadow');
  const colour = await rawPixels(zip.get('color.jpg')!);
  assert.ok(mean(colour.data, 3, 0) < 60, `color.jpg is black where only the shadow is: ${mean(colour.data, 3, 0)}`);

  // Without a shadow, crop's canvas would be the subject's box.
  const [, , boxWidth, boxHeight] = base.box.split(',').map(Number) as [number, number, number, number];
  const shadowed = await alphaChannel(await expectImage(await postImage(`${removal}?crop=true&shadow_type=drop`, CAR), 'image/png'));
  const reach = shadowReach({ width: boxWidth, height: boxHeight });
  assert.deepEqual([shadowed.width, shadowed.height], [boxWidth + reach.left + reach.right, boxHeight + reach.top + reach.bottom]);
  let edge = 0;
  for (let x = 0; x < shadowed.width; x += 1) edge = Math.max(edge, shadowed.data[(shadowed.height - 1) * shadowed.width + x]!);
  for (let y = 0; y < shadowed.height; y += 1) edge = Math.max(edge, shadowed.data[y * shadowed.width + shadowed.width - 1]!);
  assert.ok(edge <= 4, `the shadow has faded out before the crop's right and bottom edges: ${edge}`);
});

test('semitransparency=false keeps the outline soft and nothing else', async () => {
  const base = await baseMatte();
  const hard = await matte('semitransparency=false');
  const soft = (alpha: Buffer): number => alpha.filter((value) => value > 0 && value < 255).length;
  assert.ok(soft(hard.alpha) < soft(base.alpha) / 4, `${soft(hard.alpha)} soft pixels left of ${soft(base.alpha)}`);
  for (let pixel = 0; pixel < base.alpha.length; pixel += 1) {
    const value = base.alpha[pixel]!;
    if (value === 0 || value === 255) assert.equal(hard.alpha[pixel], value, 'clear and opaque pixels stay');
    else assert.ok(hard.alpha[pixel] === value || hard.alpha[pixel] === (value >= 128 ? 255 : 0), 'soft ones stay or are thresholded');
  }
});
