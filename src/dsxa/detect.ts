/**
 * The emulator's "engine": an incremental inspection of a byte stream, chunk by chunk, in constant
 * memory. It finds the EICAR test string anywhere (also across chunk boundaries), recognizes a ZIP whose
 * first entry is encrypted, guesses a DSXA-style file type, and hashes the bytes (SHA-256).
 */
import crypto from 'node:crypto';
import { EICAR_TEST_STRING } from '../connectors/eicar.ts';

const EICAR = Buffer.from(EICAR_TEST_STRING, 'latin1');
const ZIP_LOCAL_HEADER = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
/** Bytes kept from the start of the stream for type detection. */
const HEAD_BYTES = 512;

/** What the inspection found, once the stream ended. */
export interface Inspection {
  size: number;
  /** SHA-256 of the bytes, lowercase hex. */
  sha256: string;
  eicar: boolean;
  /** A ZIP whose first local file header has general-purpose flag bit 0 (encrypted) set. */
  encryptedZip: boolean;
  /** DSXA-style type name: ZIPFileType, OOXMLFileType, PDFFileType, TextFileType or UnknownFileType. */
  fileType: string;
}

/** Feed it chunks with update(), then call finish() once. */
export class StreamInspector {
  #size = 0;
  #head: Buffer = Buffer.alloc(0);
  /** The last EICAR.length - 1 bytes seen: a match can start there and end in the next chunk. */
  #tail: Buffer = Buffer.alloc(0);
  #eicar = false;
  readonly #hash = crypto.createHash('sha256');

  update(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.#size += chunk.length;
    this.#hash.update(chunk);
    if (this.#head.length < HEAD_BYTES) this.#head = Buffer.concat([this.#head, chunk.subarray(0, HEAD_BYTES - this.#head.length)]);
    if (this.#eicar) return;
    // Matches spanning the boundary: tail + the first bytes of this chunk (small, whatever the chunk).
    if (this.#tail.length > 0) {
      const seam = Buffer.concat([this.#tail, chunk.subarray(0, EICAR.length - 1)]);
      if (seam.indexOf(EICAR) !== -1) this.#eicar = true;
    }
    if (!this.#eicar && chunk.indexOf(EICAR) !== -1) this.#eicar = true;
    const keep = EICAR.length - 1;
    this.#tail =
      chunk.length >= keep ? Buffer.from(chunk.subarray(chunk.length - keep)) : Buffer.concat([this.#tail, chunk]).subarray(-keep);
  }

  finish(): Inspection {
    const head = this.#head;
    const isZip = head.length >= 30 && head.subarray(0, 4).equals(ZIP_LOCAL_HEADER);
    const encryptedZip = isZip && (head.readUInt16LE(6) & 0x0001) === 0x0001;
    return { size: this.#size, sha256: this.#hash.digest('hex'), eicar: this.#eicar, encryptedZip, fileType: fileTypeOf(head, isZip) };
  }
}

function fileTypeOf(head: Buffer, isZip: boolean): string {
  if (isZip) {
    const nameLength = head.readUInt16LE(26);
    const firstName = head.subarray(30, 30 + nameLength).toString('latin1');
    return firstName === '[Content_Types].xml' || firstName.startsWith('word/') || firstName.startsWith('xl/') ? 'OOXMLFileType' : 'ZIPFileType';
  }
  if (head.subarray(0, 5).toString('latin1') === '%PDF-') return 'PDFFileType';
  if (head.length > 0 && isText(head)) return 'TextFileType';
  return 'UnknownFileType';
}

/** No control bytes other than tab, newlines, form feed and escape (UTF-8 and Latin-1 letters pass). */
function isText(head: Buffer): boolean {
  for (const b of head) {
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0c && b !== 0x0d && b !== 0x1b) return false;
    if (b === 0x7f) return false;
  }
  return true;
}
