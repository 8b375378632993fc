/**
 * Builds the connector of an integration from its kind and settings, and keeps one per integration
 * (rebuilt when the integration's settings change).
 */
import type pg from 'pg';
import { integrationGet, type Integration } from '../db/sql/catalog.ts';
import { FaultyConnector } from './faulty.ts';
import { defaultQuarantineDir, FilesystemConnector } from './filesystem/index.ts';
import { SyntheticConnector } from './synthetic.ts';
import { ConnectorError, type Connector } from './types.ts';

/** What connectors need from the process's configuration. */
export interface ConnectorEnvironment {
  /** `DSX_DATA_DIR`: the default filesystem quarantine is `<dataDir>/quarantine/<integration id>`. */
  dataDir?: string;
}

/** A connector for one integration row. Throws for a kind this build cannot serve. */
export function connectorFor(integration: Pick<Integration, 'id' | 'name' | 'kind' | 'settings'>, env: ConnectorEnvironment = {}): Connector {
  const base = baseConnector(integration, env);
  const f = integration.settings.faults as Record<string, unknown> | undefined;
  if (!f || typeof f !== 'object') return base;
  const num = (v: unknown) => (typeof v === 'number' ? v : undefined);
  return new FaultyConnector(base, {
    listFailRate: num(f.list_fail_rate),
    readFailRate: num(f.read_fail_rate),
    failFirstLists: num(f.fail_first_lists),
  });
}

function baseConnector(integration: Pick<Integration, 'id' | 'name' | 'kind' | 'settings'>, env: ConnectorEnvironment): Connector {
  const s = integration.settings;
  switch (integration.kind) {
    case 'filesystem':
      return new FilesystemConnector({
        root: String(s.root),
        // The default is outside every share (a share user could plant symlinks in one inside it).
        quarantineDir:
          typeof s.quarantine_dir === 'string' ? s.quarantine_dir : env.dataDir !== undefined ? defaultQuarantineDir(env.dataDir, integration.id) : undefined,
      });
    case 'synthetic':
      return new SyntheticConnector({
        objects: Number(s.objects),
        size: typeof s.size === 'number' ? s.size : undefined,
        eicarEvery: typeof s.eicar_every === 'number' ? s.eicar_every : undefined,
      });
    default:
      // s3 / azure_blob integrations receive storage events (monitoring) but cannot fetch objects yet.
      throw new ConnectorError('unavailable', `integration ${integration.name}: connector kind ${integration.kind} is not available in this version`);
  }
}

const TTL_MS = 5_000;

/** Connectors by integration id, cached for a few seconds so settings changes are picked up. */
export class ConnectorRegistry {
  readonly #pool: pg.Pool;
  readonly #env: ConnectorEnvironment;
  readonly #cache = new Map<number, { at: number; connector: Promise<Connector> }>();

  constructor(pool: pg.Pool, env: ConnectorEnvironment = {}) {
    this.#pool = pool;
    this.#env = env;
  }

  get(integrationId: number): Promise<Connector> {
    const hit = this.#cache.get(integrationId);
    if (hit && Date.now() - hit.at < TTL_MS) return hit.connector;
    const connector = integrationGet(this.#pool, integrationId).then((row) => {
      if (!row) throw new Error(`unknown integration id ${integrationId}`);
      return connectorFor(row, this.#env);
    });
    connector.catch(() => this.#cache.delete(integrationId));
    this.#cache.set(integrationId, { at: Date.now(), connector });
    return connector;
  }
}
