/**
 * Cloud Storage's finalized events as Eventarc sends them, and the storage
 * function behind the functions framework's own test server, which builds
 * the server exactly as production does.
 */
import type { Services } from '../../functions/app';
import { STORAGE_FUNCTION } from '../../functions/config';
import type { FakeObject } from './fakeStorage';
import { listen, type RunningServer } from './http';

export interface StorageEvent {
  specversion: '1.0';
  id: string;
  type: string;
  source: string;
  subject: string;
  time?: string;
  datacontenttype: 'application/json';
  data: Record<string, unknown>;
}

export interface EventOptions {
  id?: string;
  /** The CloudEvent's `time`; null leaves it out (the function then reads the object's timeCreated). */
  time?: string | null;
  /** Real events write int64 fields as strings; some fixtures as numbers. */
  int64As?: 'string' | 'number';
  type?: string;
}

let eventIds = 0;

/** A `google.cloud.storage.object.v1.finalized` event for `object`, its data a StorageObjectData. */
export function finalizedEvent(object: FakeObject, options: EventOptions = {}): StorageEvent {
  const int64 = (value: string | number): string | number => (options.int64As === 'number' ? Number(value) : String(value));
  const time = options.time === undefined ? object.timeCreated : options.time;
  return {
    specversion: '1.0',
    id: options.id ?? `event-${++eventIds}`,
    type: options.type ?? 'google.cloud.storage.object.v1.finalized',
    source: `//storage.googleapis.com/projects/_/buckets/${object.bucket}`,
    subject: `objects/${object.name}`,
    ...(time === null ? {} : { time }),
    datacontenttype: 'application/json',
    data: {
      kind: 'storage#object',
      bucket: object.bucket,
      name: object.name,
      generation: int64(object.generation),
      metageneration: int64(1),
      contentType: object.contentType,
      size: int64(object.body.length),
      timeCreated: object.timeCreated,
      updated: object.timeCreated,
      ...(Object.keys(object.metadata).length > 0 ? { metadata: { ...object.metadata } } : {}),
    },
  };
}

/**
 * Posts the event in structured mode (the whole event as JSON) or binary mode
 * (its attributes as ce- headers, its data as the body).
 */
export function postEvent(url: string, event: StorageEvent, mode: 'structured' | 'binary' = 'structured'): Promise<Response> {
  if (mode === 'structured') {
    return fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body: JSON.stringify(event) });
  }
  const { data, datacontenttype, ...attributes } = event;
  const headers: Record<string, string> = { 'content-type': datacontenttype };
  for (const [name, value] of Object.entries(attributes)) if (value !== undefined) headers[`ce-${name}`] = value;
  return fetch(url, { method: 'POST', headers, body: JSON.stringify(data) });
}

/** Registers `services`' storage function with the framework under its deployed name, and serves it on loopback. */
export async function startStorageFunction(services: Services): Promise<RunningServer> {
  const { cloudEvent } = await import('@google-cloud/functions-framework');
  const { getTestServer } = await import('@google-cloud/functions-framework/testing');
  cloudEvent(STORAGE_FUNCTION, services.events.removeBackgroundFromStorage);
  return listen(getTestServer(STORAGE_FUNCTION));
}
