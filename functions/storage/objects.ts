/**
 * The few Cloud Storage calls the storage function makes, through
 * @google-cloud/storage v7 (v8 needs Node 22): an object's metadata, its
 * bytes at one generation, and a write under a generation precondition. The
 * library is loaded on the first call, so the HTTP functions, which load
 * this module too, never load it.
 *
 * What the caller must tell apart is returned as data: a missing object is
 * null, a failed precondition is 'precondition-failed'. Any other failure is
 * thrown as a StorageFailure, which the caller treats as transient.
 */
import type { Storage } from '@google-cloud/storage';

export interface ObjectName {
  bucket: string;
  name: string;
}

export interface StoredObject {
  /** An int64, kept as its decimal text: generations are microsecond timestamps, past what a double holds exactly for long. */
  generation: string;
  /** The object's custom metadata. */
  metadata: Readonly<Record<string, string>>;
}

export interface NewObject {
  body: Buffer;
  contentType: string;
  metadata: Readonly<Record<string, string>>;
  /** `0`: only if no object has the name; otherwise only if the live object is this generation. */
  ifGenerationMatch: string;
}

export type WriteOutcome = 'written' | 'precondition-failed';

export interface ObjectStore {
  describe(object: ObjectName): Promise<StoredObject | null>;
  /** The bytes of that generation; null once it is no longer there (deleted, or replaced without versioning). */
  read(object: ObjectName, generation: string): Promise<Buffer | null>;
  /** The bytes that generation holds, from its metadata; null once it is no longer there. */
  sizeOf(object: ObjectName, generation: string): Promise<number | null>;
  write(object: ObjectName, contents: NewObject): Promise<WriteOutcome>;
}

export interface ObjectStoreSettings {
  /** The library's own retries of a call that failed with 408, 429 or 5xx, or lost its connection; 0 for none. */
  retries: number;
  /** Each call's own time limit. */
  timeoutMs: number;
  /** A local stand-in for the JSON API (tests); undefined: Google's, with the runtime's credentials. */
  endpoint: string | undefined;
}

/** A call Cloud Storage did not answer as hoped: `status` is its HTTP status, when there was an answer. */
export class StorageFailure extends Error {
  readonly status: number | undefined;

  constructor(message: string, status: number | undefined, cause: unknown) {
    super(message, { cause });
    this.name = 'StorageFailure';
    this.status = status;
  }
}

/** The HTTP status of one of the library's errors (an ApiError's `code`), if it has one. */
function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function failure(action: string, object: ObjectName, error: unknown): StorageFailure {
  const status = statusOf(error);
  const detail = error instanceof Error ? error.message : String(error);
  return new StorageFailure(`Cloud Storage ${action} gs://${object.bucket}/${object.name} failed${status === undefined ? '' : ` (${status})`}: ${detail}`, status, error);
}

export function createObjectStore(settings: ObjectStoreSettings): ObjectStore {
  let client: Promise<Storage> | undefined;
  const storage = (): Promise<Storage> =>
    (client ??= import('@google-cloud/storage').then(
      ({ Storage: Client }) =>
        new Client({
          ...(settings.endpoint === undefined ? {} : { apiEndpoint: settings.endpoint }),
          timeout: settings.timeoutMs,
          // The library reads maxRetries 0 as "use the default": none at all is autoRetry false.
          retryOptions: settings.retries > 0 ? { autoRetry: true, maxRetries: settings.retries } : { autoRetry: false },
        }),
    ));
  const file = async ({ bucket, name }: ObjectName, generation?: string) => (await storage()).bucket(bucket).file(name, generation === undefined ? {} : { generation });

  return {
    async describe(object) {
      try {
        const [metadata] = await (await file(object)).getMetadata();
        const custom = Object.entries(metadata.metadata ?? {}).filter((entry): entry is [string, string] => typeof entry[1] === 'string');
        return { generation: String(metadata.generation), metadata: Object.fromEntries(custom) };
      } catch (error) {
        if (statusOf(error) === 404) return null;
        throw failure('metadata of', object, error);
      }
    },
    async sizeOf(object, generation) {
      try {
        const [metadata] = await (await file(object, generation)).getMetadata();
        return Number(metadata.size);
      } catch (error) {
        if (statusOf(error) === 404) return null;
        throw failure('metadata of', object, error);
      }
    },
    async read(object, generation) {
      try {
        const [bytes] = await (await file(object, generation)).download();
        return bytes;
      } catch (error) {
        if (statusOf(error) === 404) return null;
        throw failure('read of', object, error);
      }
    },
    async write(object, contents) {
      try {
        await (await file(object)).save(contents.body, {
          // One request: the whole body is in memory already; resumable uploads are for what could not be sent again.
          resumable: false,
          contentType: contents.contentType,
          metadata: { metadata: { ...contents.metadata } },
          // With a precondition the library may also retry the write: a retry can never write twice.
          preconditionOpts: { ifGenerationMatch: contents.ifGenerationMatch },
        });
        return 'written';
      } catch (error) {
        if (statusOf(error) === 412) return 'precondition-failed';
        throw failure('write of', object, error);
      }
    },
  };
}
