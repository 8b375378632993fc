/**
 * Where the embedded PostgreSQL keeps its state under DSX_DATA_DIR, and its credentials file: the
 * random passwords of the bootstrap superuser and of the owner role the product connects as, created
 * once with the cluster, mode 0600, readable by the service user alone. Every process on the machine
 * (the server's starter, CLI commands, `dsx-connect psql`) finds the passwords here, and only here.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { accountName } from './os-accounts.ts';

/** The files and directories of one embedded installation. */
export interface EmbeddedLayout {
  dataDir: string;
  /** The cluster (PGDATA), owned by the account the server runs as. */
  clusterDir: string;
  /** JSON with both passwords, mode 0600. */
  credentialsFile: string;
  /** The server's Unix socket directory, mode 0700, instead of the world-writable /tmp. */
  socketDir: string;
}

/** The layout under `dataDir` (an absolute or relative path; resolved here). */
export function embeddedLayout(dataDir: string): EmbeddedLayout {
  const dir = path.resolve(dataDir);
  return {
    dataDir: dir,
    clusterDir: path.join(dir, 'pg'),
    credentialsFile: path.join(dir, 'pg-credentials.json'),
    socketDir: path.join(dir, 'pg-socket'),
  };
}

/** Name of the bootstrap superuser: what earlier versions created, so upgraded clusters keep it. */
export const SUPERUSER = 'postgres';
/** The role the product connects as: LOGIN, no superuser, no CREATEDB/CREATEROLE; owns the database. */
export const OWNER_ROLE = 'dsx_owner';

const roleName = z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'a lower-case PostgreSQL role name');
const password = z.string().min(32, 'at least 32 characters');
const credentialsSchema = z.object({
  version: z.literal(1),
  superuser: z.object({ name: roleName, password }),
  owner: z.object({ name: roleName, password }),
});

/** The passwords of one embedded cluster. */
export type EmbeddedCredentials = z.infer<typeof credentialsSchema>;

/** 32 random bytes, base64url: 256 bits, and safe in a URL without escaping. */
function randomPassword(): string {
  return crypto.randomBytes(32).toString('base64url');
}

/** New random credentials (nothing is written). */
export function generateCredentials(): EmbeddedCredentials {
  return {
    version: 1,
    superuser: { name: SUPERUSER, password: randomPassword() },
    owner: { name: OWNER_ROLE, password: randomPassword() },
  };
}

function ownerOf(file: string): string {
  try {
    const { uid } = fs.statSync(file);
    const name = accountName(uid);
    return name ? `${name} (uid ${uid})` : `uid ${uid}`;
  } catch {
    return 'the user who owns DSX_DATA_DIR';
  }
}

/**
 * Reads the credentials file. Undefined when it does not exist (a cluster not created yet, or one made
 * by a version before the file existed). Throws one line naming the file and what to do when it cannot
 * be read or is not a credentials file. A file others can read is narrowed back to 0600 (`onNotice`).
 */
export function readCredentials(file: string, onNotice: (message: string) => void): EmbeddedCredentials | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'EACCES' || code === 'EPERM') {
      throw new Error(
        `cannot read the embedded PostgreSQL's credentials in ${file}: permission denied (only its owner, ${ownerOf(file)}, may read it): ` +
          'run dsx-connect as that user, or set DATABASE_URL to a server of your own',
      );
    }
    throw new Error(`cannot read the embedded PostgreSQL's credentials in ${file}: ${(err as Error).message}`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const parsed = credentialsSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(
      `${file} is not a valid credentials file (${issue ? `${issue.path.join('.') || 'file'}: ${issue.message}` : 'not JSON'}): ` +
        'restore it from a backup; without it the embedded cluster cannot be opened',
    );
  }
  const mode = fs.statSync(file).mode & 0o777;
  if (mode & 0o077) {
    fs.chmodSync(file, 0o600);
    onNotice(`${file} was readable by other users (mode 0${mode.toString(8)}): narrowed it to 0600`);
  }
  return parsed.data;
}

/**
 * Writes `creds` to `file` unless the file exists, atomically (a complete file or none: written
 * to a private temporary file, then hard-linked into place, which fails if another process got
 * there first) and mode 0600 from its first byte. Returns the credentials now in the file: ours,
 * or those of the process that won the race.
 */
export function claimCredentials(file: string, creds: EmbeddedCredentials, onNotice: (message: string) => void): EmbeddedCredentials {
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.fchmodSync(fd, 0o600); // the umask can only narrow the mode given to open; make it exact
    fs.writeSync(fd, `${JSON.stringify(creds, null, 2)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.linkSync(tmp, file);
    return creds;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const existing = readCredentials(file, onNotice);
    if (!existing) throw new Error(`${file} vanished while it was being created: start again`, { cause: err });
    return existing;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}
