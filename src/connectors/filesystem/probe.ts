/**
 * `dsx-connect integration test` for a filesystem integration: tries each capability under a scope root
 * without changing any file of the share. Listing and reading go through the connector itself; the
 * quarantine is tried by writing and removing a probe file in the quarantine directory (outside the
 * share); delete by checking that the service user may remove entries of the scope's directory.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Connector, ProbeResult } from '../types.ts';
import { normalizeRelativePath } from '../identity.ts';

function why(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The probe of a filesystem connector (see the module comment). */
export async function probeFilesystem(connector: Connector, root: string, quarantineDir: string | null, scopeRoot: string): Promise<ProbeResult[]> {
  const out: ProbeResult[] = [];
  let first: string | undefined;
  try {
    const page = await connector.listPage(scopeRoot, null, 1);
    first = page.objects[0]?.identity;
    out.push({ capability: 'list', ok: true, detail: first ? `listed ${JSON.stringify(first)}` : 'the scope is empty' });
  } catch (err) {
    out.push({ capability: 'list', ok: false, detail: why(err) });
  }
  if (first === undefined) {
    out.push({ capability: 'read', ok: true, detail: 'no file to read yet' });
  } else {
    try {
      const opened = await connector.open(first);
      await new Promise<void>((resolve, reject) => {
        opened.stream.once('readable', () => resolve());
        opened.stream.once('end', () => resolve());
        opened.stream.once('error', reject);
      });
      opened.stream.destroy();
      out.push({ capability: 'read', ok: true, detail: `read ${JSON.stringify(first)}` });
    } catch (err) {
      out.push({ capability: 'read', ok: false, detail: why(err) });
    }
  }
  out.push({ capability: 'tag', ok: false, detail: 'plain filesystems have no object tags (tag decisions are recorded not_supported)' });
  if (quarantineDir === null) {
    out.push({ capability: 'quarantine', ok: false, detail: 'no quarantine directory is configured' });
  } else {
    const probe = path.join(quarantineDir, `.dsx-probe-${randomUUID()}`);
    try {
      await fs.mkdir(quarantineDir, { recursive: true, mode: 0o700 });
      await fs.writeFile(probe, '', { flag: 'wx', mode: 0o600 });
      await fs.unlink(probe);
      out.push({ capability: 'quarantine', ok: true, detail: `can write to ${quarantineDir}` });
    } catch (err) {
      await fs.rm(probe, { force: true }).catch(() => {});
      out.push({ capability: 'quarantine', ok: false, detail: `cannot write to ${quarantineDir}: ${why(err)}` });
    }
  }
  const dir = path.join(root, normalizeRelativePath(scopeRoot));
  try {
    await fs.access(dir, fsConstants.W_OK | fsConstants.X_OK);
    out.push({ capability: 'delete', ok: true, detail: `the service user may remove files in ${dir}` });
  } catch (err) {
    out.push({ capability: 'delete', ok: false, detail: `cannot remove files in ${dir}: ${why(err)}` });
  }
  return out;
}
