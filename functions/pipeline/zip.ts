import { crc32 } from 'node:zlib';

export interface ZipEntry {
  name: string;
  data: Buffer;
}

// "Stored" (no compression): the entries are JPEG and PNG, which deflate cannot shrink.
const STORED = 0;
const VERSION = 20;
// 1980-01-01 00:00 in DOS date/time, so the same images give the same bytes.
const DOS_DATE = (0 << 9) | (1 << 5) | 1;

interface EntryFields {
  checksum: number;
  size: number;
  nameLength: number;
}

/** The run of fields the local header (at 8) and the central directory entry (at 10) share. */
function writeEntryFields(header: Buffer, at: number, fields: EntryFields): void {
  header.writeUInt16LE(STORED, at);
  header.writeUInt16LE(DOS_DATE, at + 4);
  header.writeUInt32LE(fields.checksum, at + 6);
  header.writeUInt32LE(fields.size, at + 10);
  header.writeUInt32LE(fields.size, at + 14);
  header.writeUInt16LE(fields.nameLength, at + 18);
}

/** A minimal ZIP archive (no ZIP64: outputs are far below 4 GiB). */
export function zipStored(entries: readonly ZipEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const fields = { checksum: crc32(entry.data), size: entry.data.length, nameLength: name.length };
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(VERSION, 4);
    writeEntryFields(local, 8, fields);
    locals.push(local, name, entry.data);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(VERSION, 4);
    central.writeUInt16LE(VERSION, 6);
    writeEntryFields(central, 10, fields);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + entry.data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}
