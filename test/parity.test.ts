import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import '../functions/index';
import { alphaChannel, compareAlpha, fixture } from '../tools/lib/images';
import { bodyBytes, postForm, type RunningServer } from '../tools/lib/http';
import { startFunction } from './support/servers';

let server: RunningServer;
before(async () => {
  server = await startFunction('removeBackground');
});
after(() => server.close());

test('anime-girl-1 matches rembg isnet-general-use within IoU 0.98 and MAE 0.005', async () => {
  const response = await postForm(server.url, { image: fixture('anime-girl-1.jpg') });
  assert.equal(response.status, 200);
  const actual = await alphaChannel(await bodyBytes(response));
  const expected = await alphaChannel(fixture('anime-girl-1.isnet-general-use.png'));
  assert.deepEqual([actual.width, actual.height], [expected.width, expected.height]);
  const { iou, mae } = compareAlpha(actual.data, expected.data);
  console.log(`parity: IoU ${iou.toFixed(4)}, MAE ${mae.toFixed(5)}`);
  assert.ok(iou >= 0.98, `IoU ${iou} < 0.98`);
  assert.ok(mae <= 0.005, `MAE ${mae} > 0.005`);
});
