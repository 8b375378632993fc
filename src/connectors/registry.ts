/**
 * Builds the connector of an integration from its kind, settings and credentials, and keeps one per
 * integration (rebuilt when the integration's settings change), with one request limiter per
 * integration that outlives the rebuilds: the limit is the integration's, shared by all its jobs in
 * the process, and a new limiter per rebuild would forget the requests still in flight.
 */
import type pg from 'pg';
import { filesystemRoots, integrationCredentialsGet, integrationGet, type Integration } from '../db/sql/catalog.ts';
import type { Logger } from '../log.ts';
import { AzureBlobConnector } from './azure-blob/connector.ts';
import { limitOptionsOf, parseAzureBlobSettings } from './azure-blob/settings.ts';
import { FaultyConnector } from './faulty.ts';
import { defaultQuarantineDir, FilesystemConnector, type OtherRoot } from './filesystem/index.ts';
import { RequestLimiter } from './rate-limit.ts';
import { S3Connector } from './s3/connector.ts';
import { limiterOptionsOf, parseS3Settings } from './s3/settings.ts';
import { SyntheticConnector } from './synthetic.ts';
import { ConnectorError, type Connector } from './types.ts';

/** What connectors need from the process's configuration. */
export interface ConnectorEnvironment {
  /** `DSX_DATA_DIR`: the default filesystem quarantine is `<dataDir>/quarantine/<integration id>`. */
  dataDir?: string;
  log?: Logger;
}

/** What building a connector needs besides the integration row. */
export interface ConnectorInputs {
  /** The integration's stored credentials (write-only elsewhere), or null. */
  credentials?: unknown;
  /** The integration's limiter (cloud connectors); one is made when absent. */
  limiter?: RequestLimiter;
  /** Filesystem: the other filesystem integrations' roots, which its quarantine must stay out of. */
  otherRoots?: readonly OtherRoot[];
}

type IntegrationRow = Pick<Integration, 'id' | 'name' | 'kind' | 'settings'>;

/** The limits of an integration's requests (cloud connectors), from its settings. */
export function limiterFor(integration: IntegrationRow): RequestLimiter {
  try {
    if (integration.kind === 's3') return new RequestLimiter(limiterOptionsOf(parseS3Settings(integration.settings)));
    if (integration.kind === 'azure_blob') return new RequestLimiter(limitOptionsOf(parseAzureBlobSettings(integration.settings)));
  } catch {
    // Invalid settings: the connector's own construction reports them, naming the field.
  }
  return new RequestLimiter();
}

/** A connector for one integration row. Throws ConnectorError for a kind or settings it cannot serve. */
export function connectorFor(integration: IntegrationRow, env: ConnectorEnvironment = {}, inputs: ConnectorInputs = {}): Connector {
  const base = baseConnector(integration, env, inputs);
  const f = integration.settings.faults as Record<string, unknown> | undefined;
  if (!f || typeof f !== 'object') return base;
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  return new FaultyConnector(base, {
    listFailRate: num(f.list_fail_rate),
    readFailRate: num(f.read_fail_rate),
    failFirstLists: num(f.fail_first_lists),
  });
}

function baseConnector(integration: IntegrationRow, env: ConnectorEnvironment, inputs: ConnectorInputs): Connector {
  const s = integration.settings;
  const log = env.log?.child({ integration_id: integration.id });
  switch (integration.kind) {
    case 'filesystem':
      return new FilesystemConnector({
        root: String(s.root),
        // The default is outside every share (a share user could plant symlinks in one inside it).
        quarantineDir:
          typeof s.quarantine_dir === 'string' ? s.quarantine_dir : env.dataDir !== undefined ? defaultQuarantineDir(env.dataDir, integration.id) : undefined,
        otherRoots: inputs.otherRoots,
      });
    case 'synthetic':
      return new SyntheticConnector({
        objects: Number(s.objects),
        size: typeof s.size === 'number' ? s.size : undefined,
        eicarEvery: typeof s.eicar_every === 'number' ? s.eicar_every : undefined,
      });
    case 's3':
      return new S3Connector({ settings: s, credentials: inputs.credentials ?? null, limiter: inputs.limiter ?? limiterFor(integration), log });
    case 'azure_blob':
      return new AzureBlobConnector({ settings: s, credentials: inputs.credentials ?? null, limiter: inputs.limiter ?? limiterFor(integration), log });
    default:
      throw new ConnectorError('unavailable', `integration ${integration.name}: connector kind ${integration.kind} is not available in this version`);
  }
}

const TTL_MS = 5_000;
/** A replaced connector is closed this long after its replacement, when its requests are long done. */
const CLOSE_GRACE_MS = 120_000;

interface Entry {
  at: number;
  /** The settings and credentials the connector was built from (a change rebuilds it). */
  fingerprint: string;
  connector: Promise<Connector>;
}

/** Connectors by integration id, re-read every few seconds so settings changes are picked up. */
export class ConnectorRegistry {
  readonly #pool: pg.Pool;
  readonly #env: ConnectorEnvironment;
  readonly #cache = new Map<number, Entry>();
  readonly #limiters = new Map<number, { key: string; limiter: RequestLimiter }>();
  readonly #closing = new Set<NodeJS.Timeout>();

  constructor(pool: pg.Pool, env: ConnectorEnvironment = {}) {
    this.#pool = pool;
    this.#env = env;
  }

  get(integrationId: number): Promise<Connector> {
    const hit = this.#cache.get(integrationId);
    if (hit && Date.now() - hit.at < TTL_MS) return hit.connector;
    const next = this.#build(integrationId, hit);
    next.catch(() => {
      if (this.#cache.get(integrationId)?.connector === next) this.#cache.delete(integrationId);
    });
    return next;
  }

  async #build(integrationId: number, previous: Entry | undefined): Promise<Connector> {
    const pending: Entry = { at: Date.now(), fingerprint: previous?.fingerprint ?? '', connector: undefined as unknown as Promise<Connector> };
    pending.connector = (async () => {
      const row = await integrationGet(this.#pool, integrationId);
      if (!row) throw new Error(`unknown integration id ${integrationId}`);
      const credentials = row.kind === 's3' || row.kind === 'azure_blob' ? await integrationCredentialsGet(this.#pool, integrationId) : null;
      // Settings can change through psql, past the checks of integration add: the quarantine is checked
      // against the other shares' roots at every move, and a change of any of them rebuilds the connector.
      const otherRoots: OtherRoot[] | undefined =
        row.kind === 'filesystem'
          ? (await filesystemRoots(this.#pool)).filter((r) => r.id !== row.id).map((r) => ({ id: r.id, name: r.name, root: r.root }))
          : undefined;
      const fingerprint = JSON.stringify([row.kind, row.settings, credentials, otherRoots ?? null]);
      if (previous && previous.fingerprint === fingerprint) {
        pending.fingerprint = fingerprint;
        return previous.connector; // unchanged: keep the connector (and its sockets)
      }
      pending.fingerprint = fingerprint;
      const connector = connectorFor(row, this.#env, { credentials, limiter: this.#limiterOf(row), otherRoots });
      if (previous) this.#closeLater(previous.connector);
      return connector;
    })();
    this.#cache.set(integrationId, pending);
    return pending.connector;
  }

  /** The integration's limiter, kept across rebuilds while its limits stay the same. */
  #limiterOf(row: IntegrationRow): RequestLimiter {
    const key = JSON.stringify(row.settings.limits ?? null);
    const known = this.#limiters.get(row.id);
    if (known && known.key === key) return known.limiter;
    const limiter = limiterFor(row);
    this.#limiters.set(row.id, { key, limiter });
    return limiter;
  }

  #closeLater(connector: Promise<Connector>): void {
    const timer = setTimeout(() => {
      this.#closing.delete(timer);
      void connector.then((c) => c.close?.()).catch(() => {});
    }, CLOSE_GRACE_MS);
    timer.unref();
    this.#closing.add(timer);
  }

  /** Closes every connector (process shutdown). */
  async close(): Promise<void> {
    for (const t of this.#closing) clearTimeout(t);
    this.#closing.clear();
    const all = [...this.#cache.values()];
    this.#cache.clear();
    await Promise.all(all.map((e) => e.connector.then((c) => c.close?.()).catch(() => {})));
  }
}
