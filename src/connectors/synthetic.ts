/**
 * The synthetic connector: a generated scope of N objects with deterministic contents, for load tests
 * and benchmarks without a disk in the way. Identities are `<root>/obj-000000042`; every
 * `eicarEvery`-th object contains the EICAR test string. Read-only: item actions are not supported.
 */
import { Readable } from 'node:stream';
import { EICAR_TEST_STRING } from './eicar.ts';
import { ConnectorError, type ActionResult, type Connector, type ObjectInfo, type OpenedObject, type Page } from './types.ts';

export interface SyntheticOptions {
  objects: number;
  /** Bytes per object (default 1024). */
  size?: number;
  /** Every n-th object (1-based index divisible by n) is EICAR; 0 = none. Default 1000. */
  eicarEvery?: number;
}

const NAME = /^obj-(\d{9})$/;
const MTIME = '2026-01-01T00:00:00.000Z';

export class SyntheticConnector implements Connector {
  readonly kind = 'synthetic';
  readonly #objects: number;
  readonly #size: number;
  readonly #eicarEvery: number;

  constructor(opts: SyntheticOptions) {
    this.#objects = opts.objects;
    this.#size = Math.max(opts.size ?? 1024, EICAR_TEST_STRING.length);
    this.#eicarEvery = opts.eicarEvery ?? 1000;
  }

  #identity(root: string, i: number): string {
    const name = `obj-${String(i).padStart(9, '0')}`;
    return root ? `${root}/${name}` : name;
  }

  #index(identity: string): number | null {
    const m = NAME.exec(identity.split('/').pop() ?? '');
    if (!m) return null;
    const i = Number(m[1]);
    return i >= 1 && i <= this.#objects ? i : null;
  }

  /** True when object `i` (1-based) carries the EICAR string. */
  isEicar(i: number): boolean {
    return this.#eicarEvery > 0 && i % this.#eicarEvery === 0;
  }

  async listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
    const after = cursor === null ? 0 : Number(cursor);
    if (!Number.isInteger(after) || after < 0) throw new ConnectorError('invalid', `bad synthetic cursor ${JSON.stringify(cursor)}`);
    const last = Math.min(after + pageSize, this.#objects);
    const objects: ObjectInfo[] = [];
    for (let i = after + 1; i <= last; i++) {
      objects.push({ identity: this.#identity(scopeRoot, i), size: this.#size, etag: `s${i}`, mtime: MTIME });
    }
    return { objects, nextCursor: last < this.#objects ? String(last) : null };
  }

  /** Deterministic contents of object `i`. */
  contents(i: number): Buffer {
    const buf = Buffer.alloc(this.#size, 0x20);
    const header = this.isEicar(i) ? EICAR_TEST_STRING : `synthetic object ${i}\n`;
    buf.write(header, 0, 'latin1');
    return buf;
  }

  async open(identity: string): Promise<OpenedObject> {
    const i = this.#index(identity);
    if (i === null) throw new ConnectorError('not_found', `synthetic object ${identity} does not exist`);
    return { stream: Readable.from([this.contents(i)]), size: this.#size };
  }

  async stat(identity: string): Promise<ObjectInfo | null> {
    const i = this.#index(identity);
    return i === null ? null : { identity, size: this.#size, etag: `s${i}`, mtime: MTIME };
  }

  async remove(): Promise<ActionResult> {
    return { status: 'not_supported', detail: 'synthetic objects are read-only' };
  }

  async quarantine(): Promise<ActionResult> {
    return { status: 'not_supported', detail: 'synthetic objects are read-only' };
  }

  async tag(): Promise<ActionResult> {
    return { status: 'not_supported', detail: 'synthetic objects have no tags' };
  }
}
