import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadConfig } from '../functions/config';
import { STATUS_BY_CODE } from '../functions/errors';
import { PROJECT_ROOT } from '../functions/paths';
import { PARAMETER_NAMES, PARAMETERS, parametersOfKind } from '../functions/request/parameters';
import { OPENAPI_PATH } from '../functions/server';
import { type RunningServer } from '../tools/lib/http';
import { startLocalServer } from './support/servers';

interface Schema {
  properties?: Record<string, unknown>;
  enum?: string[];
}
interface OpenApi {
  openapi: string;
  paths: Record<string, Record<string, { parameters?: { name: string }[]; requestBody?: { content: Record<string, { schema: Schema }> } }>>;
  components: { schemas: Record<string, { properties: { error: { properties: { code: Schema } } } }> };
}

const documented = JSON.parse(readFileSync(OPENAPI_PATH, 'utf8')) as OpenApi;
let server: RunningServer;

before(async () => {
  server = await startLocalServer(loadConfig({ ...process.env, PORT: '0' }));
});
after(() => server.close());

test('the local server serves the repository\'s OpenAPI 3.1 document', async () => {
  const response = await fetch(`${server.url}/openapi.json`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(await response.json(), documented);
  assert.equal(documented.openapi, '3.1.0');
});

test('it documents exactly the parameters of the request contract, each where its kind can be sent', () => {
  const removal = documented.paths['/remove-background']!.post!;
  const content = removal.requestBody!.content;
  const propertiesOf = (mediaType: string): Record<string, { contentMediaType?: string; format?: string }> =>
    content[mediaType]!.schema.properties as Record<string, { contentMediaType?: string; format?: string }>;
  const files = new Set<string>(parametersOfKind('file'));
  const texts = PARAMETER_NAMES.filter((name) => !files.has(name));
  // Files come only in multipart; base64 needs a body; URLs and values may come anywhere.
  assert.deepEqual(Object.keys(propertiesOf('multipart/form-data')), PARAMETER_NAMES);
  assert.deepEqual(Object.keys(propertiesOf('application/x-www-form-urlencoded')), texts);
  assert.deepEqual(Object.keys(propertiesOf('application/json')), texts);
  const base64 = new Set<string>(parametersOfKind('base64'));
  assert.deepEqual(
    removal.parameters!.map((parameter) => parameter.name),
    texts.filter((name) => !base64.has(name)),
  );
  for (const [name, entry] of Object.entries(PARAMETERS)) {
    const property = propertiesOf('multipart/form-data')[name]!;
    if (entry.kind === 'file') assert.equal(property.contentMediaType, 'application/octet-stream', name);
    if (entry.kind === 'url') assert.equal(property.format, 'uri', name);
  }
});

test('it lists every error code', () => {
  const codes = documented.components.schemas.Error!.properties.error.properties.code.enum!;
  assert.deepEqual(new Set(codes), new Set(Object.keys(STATUS_BY_CODE)));
});

test('the README documents every parameter and error code', () => {
  const readme = readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  for (const name of PARAMETER_NAMES) assert.match(readme, new RegExp(`\\| \`${name}\` \\|`), `parameter ${name}`);
  for (const code of Object.keys(STATUS_BY_CODE)) assert.match(readme, new RegExp(`\`${code}\``), `error code ${code}`);
});
