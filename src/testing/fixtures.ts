/**
 * Test files built without external tools: the EICAR string and ZIP archives, plain and
 * password-protected (traditional PKWARE encryption, which `unzip -P` and Python's zipfile can open).
 * Output is deterministic: the same call returns the same bytes.
 */
import zlib from 'node:zlib';
import { EICAR_TEST_STRING } from '../connectors/eicar.ts';

/** The 68-byte EICAR anti-virus test string: harmless, detected as malicious by every scanner. */
export const EICAR: string = EICAR_TEST_STRING;

/** The password of encryptedZip() unless another is given. */
export const ZIP_PASSWORD = 'infected';

/** CRC-32 table (polynomial 0xEDB88320), for the traditional encryption's key schedule. */
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

const crcByte = (crc: number, b: number): number => (CRC_TABLE[(crc ^ b) & 0xff]! ^ (crc >>> 8)) >>> 0;

/** Traditional PKWARE ("ZipCrypto") encryption of `data` (12-byte header first), APPNOTE 6.1. */
function zipCrypto(data: Buffer, password: string, crc: number): Buffer {
  let k0 = 0x12345678;
  let k1 = 0x23456789;
  let k2 = 0x34567890;
  const update = (p: number) => {
    k0 = crcByte(k0, p);
    k1 = (Math.imul((k1 + (k0 & 0xff)) >>> 0, 134775813) + 1) >>> 0;
    k2 = crcByte(k2, k1 >>> 24);
  };
  const keystreamByte = () => {
    const t = (k2 | 2) & 0xffff;
    return (Math.imul(t, t ^ 1) >>> 8) & 0xff;
  };
  for (const b of Buffer.from(password, 'utf8')) update(b);
  // The header's last byte is the CRC's high byte (a reader's password check); the rest is filler,
  // fixed here so the fixture is deterministic.
  const header = Buffer.from([0x8c, 0x1f, 0x52, 0x07, 0xe3, 0x44, 0x9a, 0x6b, 0x10, 0xd5, 0x3e, crc >>> 24]);
  const plain = Buffer.concat([header, data]);
  const out = Buffer.alloc(plain.length);
  for (let i = 0; i < plain.length; i++) {
    out[i] = plain[i]! ^ keystreamByte();
    update(plain[i]!);
  }
  return out;
}

/** 1980-01-01 00:00, the first date a ZIP can carry. */
const DOS_TIME = 0;
const DOS_DATE = (0 << 9) | (1 << 5) | 1;

/** A one-entry ZIP, stored (no compression), optionally with traditional encryption. */
function zip(name: string, data: Buffer, password: string | null): Buffer {
  const nameBuf = Buffer.from(name, 'utf8');
  const flags = password !== null ? 0x0001 : 0x0000;
  const crc = zlib.crc32(data);
  const stored = password !== null ? zipCrypto(data, password, crc) : data;

  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0); // local file header signature
  local.writeUInt16LE(20, 4); // version needed: 2.0
  local.writeUInt16LE(flags, 6); // bit 0: encrypted
  local.writeUInt16LE(0, 8); // method: stored
  local.writeUInt16LE(DOS_TIME, 10);
  local.writeUInt16LE(DOS_DATE, 12);
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(stored.length, 18); // compressed size (with the 12-byte encryption header)
  local.writeUInt32LE(data.length, 22); // uncompressed size
  local.writeUInt16LE(nameBuf.length, 26);
  local.writeUInt16LE(0, 28); // extra field length

  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0); // central directory header signature
  central.writeUInt16LE(20, 4); // version made by
  central.writeUInt16LE(20, 6); // version needed
  central.writeUInt16LE(flags, 8);
  central.writeUInt16LE(0, 10);
  central.writeUInt16LE(DOS_TIME, 12);
  central.writeUInt16LE(DOS_DATE, 14);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(stored.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(nameBuf.length, 28);
  // extra/comment length, disk number, attributes: 0; local header offset: 0 (the only entry)

  const cdOffset = local.length + nameBuf.length + stored.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); // end of central directory signature
  end.writeUInt16LE(1, 8); // entries on this disk
  end.writeUInt16LE(1, 10); // entries in total
  end.writeUInt32LE(central.length + nameBuf.length, 12); // central directory size
  end.writeUInt32LE(cdOffset, 16);
  return Buffer.concat([local, nameBuf, stored, central, nameBuf, end]);
}

/** A password-protected ZIP: one stored entry, traditional encryption (password ZIP_PASSWORD by default). */
export function encryptedZip(opts: { name?: string; content?: Buffer | string; password?: string } = {}): Buffer {
  return zip(opts.name ?? 'secret.txt', Buffer.from(opts.content ?? 'confidential\n'), opts.password ?? ZIP_PASSWORD);
}

/** A plain ZIP: one stored entry, not encrypted. */
export function plainZip(opts: { name?: string; content?: Buffer | string } = {}): Buffer {
  return zip(opts.name ?? 'hello.txt', Buffer.from(opts.content ?? 'hello\n'), null);
}
