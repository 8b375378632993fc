/**
 * Configuration from the environment, validated once at start. Every variable here is documented in
 * README.md and mirrored in .env.example. Every command first reads `.env` (`loadEnvFile`), so the
 * server, the workers and a CLI command in another terminal share one configuration.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { parseCronItem } from 'graphile-worker';
import { z } from 'zod';
import { DEFAULT_API_LIMITS, type ApiLimits } from './server/api-limits.ts';
import { parseOrigin } from './server/origin-guard.ts';

/** The project's root directory (where package.json is). */
export const PROJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Variables holding a path: a relative one in an env file is relative to that file's directory. */
const PATH_VARIABLES = new Set(['DSX_DATA_DIR']);

/**
 * Reads an env file into `env`: the file `DSX_ENV_FILE` names when set (it must exist; `/dev/null` reads
 * none), else `.env` in the project directory when there is one. Variables already in `env` win, as with
 * Node's `--env-file`; a relative DSX_DATA_DIR in the file is relative to the file, so it means one
 * directory whatever the current directory is. Returns the file read, or undefined; throws a one-line
 * message when the file cannot be read.
 */
export function loadEnvFile(env: NodeJS.ProcessEnv = process.env, projectDir = PROJECT_DIR): string | undefined {
  const named = env.DSX_ENV_FILE?.trim();
  const file = named ? path.resolve(named) : path.join(projectDir, '.env');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!named && code === 'ENOENT') return undefined;
    throw new Error(`cannot read ${named ? `DSX_ENV_FILE (${file})` : file}: ${code ?? (err as Error).message}`);
  }
  for (const [key, value] of Object.entries(parseEnv(text))) {
    if (key in env) continue;
    env[key] = PATH_VARIABLES.has(key) && value ? path.resolve(path.dirname(file), value) : value;
  }
  return file;
}

const int = (def: number, min = 1) => z.coerce.number().int().min(min).default(def);
const optionalText = z.string().trim().min(1).optional().catch(undefined);
/** Comma-separated origins, each normalized (`https://Console.Example.com/` -> `https://console.example.com`). */
const origins = z
  .string()
  .default('')
  .transform((value, ctx) => {
    const out: string[] = [];
    for (const entry of value.split(',').map((o) => o.trim()).filter(Boolean)) {
      const origin = parseOrigin(entry);
      if (origin) out.push(origin);
      else ctx.addIssue({ code: 'custom', message: `${JSON.stringify(entry)} is not an origin: give scheme://host[:port] with no path, e.g. https://console.example.com` });
    }
    return out;
  });

/** A retention in whole days: 1-36500, or 0 to keep forever (a mistyped value must not mean "delete"). */
const retentionDays = (def: number) =>
  z
    .string()
    .default(String(def))
    .refine((v) => /^\d{1,5}$/.test(v.trim()) && Number(v) <= 36_500, {
      error: (issue) => `must be a whole number of days from 1 to 36500, or 0 to keep forever (got ${JSON.stringify(issue.input)})`,
    })
    .transform(Number);
/** A cron expression (minute hour day-of-month month day-of-week), checked by graphile-worker's own parser. */
const cronSchedule = (def: string) =>
  z
    .string()
    .default(def)
    .transform((v) => v.trim())
    .superRefine((v, ctx) => {
      try {
        parseCronItem({ task: 'retention-sweep', match: v });
      } catch (err) {
        const why = (err as Error).message.replace(/\s+/g, ' ');
        ctx.addIssue({ code: 'custom', message: `${JSON.stringify(v)} is not a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. "0 * * * *" for hourly): ${why}` });
      }
    });

const envSchema = z.object({
  DATABASE_URL: optionalText,
  DSX_DATA_DIR: optionalText,
  DSX_EMBEDDED_PG_PORT: int(54329, 1024),
  PORT: int(5678, 0),
  DSXA_URL: optionalText,
  DSXA_TOKEN: optionalText,
  DSXA_TIMEOUT_MS: int(30_000),
  DSXA_MAX_IN_FLIGHT: int(16),
  DSX_PAGE_SIZE: int(500),
  DSX_SCAN_MAX_ATTEMPTS: int(5),
  DSX_ENUMERATION_MAX_ATTEMPTS: int(8),
  DSX_WORKER_CONCURRENCY: int(128),
  // Unset: sized from the page size and the worker concurrency (defaultScanWindow below).
  DSX_SCAN_WINDOW: z.preprocess((v) => (v === '' ? undefined : v), z.coerce.number().int().min(1).max(100_000_000).optional()),
  DSX_EFFECTS_CONCURRENCY: int(32),
  // The monitor lane's jobs at once per worker process. Default 16: at 100 events/s (issue 12's sizing
  // case) and ~50 ms per object in the lane (ingest ~3-6 ms, finalize ~3-5 ms measured; a small
  // object's DSXA scan ~10-40 ms), ~5 jobs run at a time (Little's law); 16 absorbs bursts of 3x
  // that, or objects 3x slower, while taking at most 16 of the scanner's slots. Past 1,000 only
  // memory grows.
  DSX_MONITOR_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
  DSX_WORKER_HEARTBEAT_MS: int(10_000, 100),
  DSX_WORKER_DEAD_AFTER_MS: int(60_000, 500),
  DSX_WEBHOOK_ALLOWED_HOSTS: z.string().default(''),
  DSX_WEBHOOK_ALLOW_PRIVATE: z.enum(['true', 'false', '1', '0', '']).default('false'),
  DSX_MONITOR_DEBOUNCE_MS: int(1000, 0),
  DSX_MONITOR_SYNC_MS: int(2000, 50),
  DSX_EVENT_MAX_BYTES: int(1_048_576, 1024),
  // A day at most: every signature is remembered for the whole window.
  DSX_EVENT_MAX_SKEW_S: z.coerce.number().int().min(1).max(86_400).default(300),
  DSX_API_URL: optionalText,
  DSX_API_TOKEN: optionalText,
  DSX_API_ALLOWED_ORIGINS: origins,
  DSX_API_MAX_BODY_BYTES: int(DEFAULT_API_LIMITS.maxBodyBytes, 1024),
  DSX_API_MAX_PAGE_SIZE: int(DEFAULT_API_LIMITS.maxPageSize),
  DSX_API_DEFAULT_PAGE_SIZE: int(DEFAULT_API_LIMITS.defaultPageSize),
  DSX_API_MAX_DEPTH: int(DEFAULT_API_LIMITS.maxDepth),
  DSX_API_MAX_ROOT_FIELDS: int(DEFAULT_API_LIMITS.maxRootFields),
  DSX_API_MAX_ALIASES: int(DEFAULT_API_LIMITS.maxAliases, 0),
  DSX_API_MAX_COST: int(DEFAULT_API_LIMITS.maxCost),
  DSX_JWT_SECRET: z.preprocess((v) => (v === '' ? undefined : v), z.string().min(32, 'must be at least 32 characters (HS256 key)').optional()),
  DSX_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DSX_RETENTION_RESULTS_DAYS: retentionDays(90),
  DSX_RETENTION_EVENTS_DAYS: retentionDays(14),
  DSX_RETENTION_AUDIT_DAYS: retentionDays(365),
  DSX_RETENTION_JOBS_DAYS: retentionDays(30),
  DSX_RETENTION_SCHEDULE: cronSchedule('0 * * * *'),
});

/** How long each table family is kept (days; 0 = forever) and when the sweep runs (src/retention/). */
export interface RetentionConfig {
  /** dsx.scan_results (finalized, not an object's latest, not of a running scan) and their side effects. */
  resultsDays: number;
  /** dsx.monitor_events handled, and idle debounce entries. */
  eventsDays: number;
  /** dsx.audit_log. */
  auditDays: number;
  /** graphile-worker jobs failed for good, and dsx.invalid_jobs. */
  jobsDays: number;
  /** Cron expression of the sweep (graphile-worker's crontab), e.g. "0 * * * *". */
  schedule: string;
}

export interface Config {
  /** External PostgreSQL; unset = the embedded one in `dataDir`. */
  databaseUrl: string | undefined;
  /** Local state: the embedded database and the demo folder. */
  dataDir: string;
  embeddedPgPort: number;
  port: number;
  /** DSXA scanner; unset = the bundled emulator (dev) or an error (worker). */
  dsxaUrl: string | undefined;
  dsxaToken: string | undefined;
  dsxaTimeoutMs: number;
  dsxaMaxInFlight: number;
  pageSize: number;
  scanMaxAttempts: number;
  /** Attempts of a failing listing before the full scan fails with its error (backoff ~30 min in all at 8). */
  enumerationMaxAttempts: number;
  workerConcurrency: number;
  /**
   * Admission window: objects of one full scan enumerated but not yet finalized, at most. Enumeration
   * pauses when the next page would not fit and resumes as finalization makes room.
   */
  scanWindow: number;
  /** Side-effect jobs (remediation, notification) run at once per worker process, in their own lane. */
  effectsConcurrency: number;
  /** Monitoring's (and manual scans') ingest, scan and finalize jobs run at once per worker process, in the monitor lane. */
  monitorConcurrency: number;
  /** How often each worker records that it is alive (and sweeps for dead ones). */
  heartbeatMs: number;
  /** A worker silent this long is dead: its jobs are unlocked for others. */
  deadWorkerAfterMs: number;
  logLevel: string;
  /** Webhook hosts allowed (empty: any public host). */
  webhookAllowedHosts: string[];
  /** Allow webhooks to private, loopback and link-local addresses. */
  webhookAllowPrivate: boolean;
  /** Monitoring: events for one object within this window of its last scan fold into one trailing scan. */
  monitorDebounceMs: number;
  /** How often the filesystem watcher re-reads which scopes are monitored. */
  monitorSyncMs: number;
  /** Largest event intake request body accepted. */
  eventMaxBytes: number;
  /** Event intake: how far a signed request's X-DSX-Timestamp may be from now (and how long its signature is remembered). */
  eventMaxSkewS: number;
  /** HS256 secret of the GraphQL API's bearer JWTs; unset = API tokens only (or the open dev mode). */
  jwtSecret: string | undefined;
  /** GraphQL endpoint the CLI talks to; set = `scan start|status|cancel` go over the API. */
  apiUrl: string | undefined;
  /** Bearer token the CLI sends to the API (an API token or a JWT). */
  apiToken: string | undefined;
  /** Browser origins the API accepts besides its own (and loopback ones when open). */
  apiAllowedOrigins: string[];
  /** What one GraphQL request may ask of the API. */
  apiLimits: ApiLimits;
  /** Retention of results, events, audit entries and failed jobs, and the sweep's schedule. */
  retention: RetentionConfig;
}

/**
 * The default admission window: room for four pages ahead of the scanners (listing the next page
 * overlaps the scanning of the ones before it), and at least sixteen times a worker's concurrency: a
 * scan process holds up to twice its concurrency (running jobs plus its local queue), so the default
 * keeps up to eight such processes busy before they wait for enumeration. With the defaults (page 500,
 * concurrency 128) it is 2,048 objects. A larger fleet sets DSX_SCAN_WINDOW (README: sizing).
 */
export function defaultScanWindow(pageSize: number, concurrency: number): number {
  return Math.max(4 * pageSize, 16 * concurrency);
}

/** Reads and validates the environment; throws a message naming the bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid environment variable ${String(issue?.path.join('.'))}: ${issue?.message}`);
  }
  const e = parsed.data;
  if (e.DSX_API_DEFAULT_PAGE_SIZE > e.DSX_API_MAX_PAGE_SIZE) {
    throw new Error(`invalid environment variable DSX_API_DEFAULT_PAGE_SIZE: ${e.DSX_API_DEFAULT_PAGE_SIZE} is above DSX_API_MAX_PAGE_SIZE (${e.DSX_API_MAX_PAGE_SIZE}); lower it or raise DSX_API_MAX_PAGE_SIZE`);
  }
  const scanWindow = e.DSX_SCAN_WINDOW ?? defaultScanWindow(e.DSX_PAGE_SIZE, e.DSX_WORKER_CONCURRENCY);
  if (scanWindow < e.DSX_PAGE_SIZE) {
    throw new Error(`invalid environment variable DSX_SCAN_WINDOW: ${scanWindow} is below DSX_PAGE_SIZE (${e.DSX_PAGE_SIZE}), so no page would ever fit; raise it or lower DSX_PAGE_SIZE`);
  }
  return {
    databaseUrl: e.DATABASE_URL,
    dataDir: path.resolve(e.DSX_DATA_DIR ?? path.join(PROJECT_DIR, '.dsx-data')),
    embeddedPgPort: e.DSX_EMBEDDED_PG_PORT,
    port: e.PORT,
    dsxaUrl: e.DSXA_URL,
    dsxaToken: e.DSXA_TOKEN,
    dsxaTimeoutMs: e.DSXA_TIMEOUT_MS,
    dsxaMaxInFlight: e.DSXA_MAX_IN_FLIGHT,
    pageSize: e.DSX_PAGE_SIZE,
    scanMaxAttempts: e.DSX_SCAN_MAX_ATTEMPTS,
    enumerationMaxAttempts: e.DSX_ENUMERATION_MAX_ATTEMPTS,
    workerConcurrency: e.DSX_WORKER_CONCURRENCY,
    scanWindow,
    effectsConcurrency: e.DSX_EFFECTS_CONCURRENCY,
    monitorConcurrency: e.DSX_MONITOR_CONCURRENCY,
    heartbeatMs: e.DSX_WORKER_HEARTBEAT_MS,
    deadWorkerAfterMs: e.DSX_WORKER_DEAD_AFTER_MS,
    logLevel: e.DSX_LOG_LEVEL,
    webhookAllowedHosts: e.DSX_WEBHOOK_ALLOWED_HOSTS.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
    webhookAllowPrivate: e.DSX_WEBHOOK_ALLOW_PRIVATE === 'true' || e.DSX_WEBHOOK_ALLOW_PRIVATE === '1',
    monitorDebounceMs: e.DSX_MONITOR_DEBOUNCE_MS,
    monitorSyncMs: e.DSX_MONITOR_SYNC_MS,
    eventMaxBytes: e.DSX_EVENT_MAX_BYTES,
    eventMaxSkewS: e.DSX_EVENT_MAX_SKEW_S,
    jwtSecret: e.DSX_JWT_SECRET,
    apiUrl: e.DSX_API_URL,
    apiToken: e.DSX_API_TOKEN,
    apiAllowedOrigins: e.DSX_API_ALLOWED_ORIGINS,
    apiLimits: {
      maxBodyBytes: e.DSX_API_MAX_BODY_BYTES,
      maxPageSize: e.DSX_API_MAX_PAGE_SIZE,
      defaultPageSize: e.DSX_API_DEFAULT_PAGE_SIZE,
      maxDepth: e.DSX_API_MAX_DEPTH,
      maxRootFields: e.DSX_API_MAX_ROOT_FIELDS,
      maxAliases: e.DSX_API_MAX_ALIASES,
      maxCost: e.DSX_API_MAX_COST,
    },
    retention: {
      resultsDays: e.DSX_RETENTION_RESULTS_DAYS,
      eventsDays: e.DSX_RETENTION_EVENTS_DAYS,
      auditDays: e.DSX_RETENTION_AUDIT_DAYS,
      jobsDays: e.DSX_RETENTION_JOBS_DAYS,
      schedule: e.DSX_RETENTION_SCHEDULE,
    },
  };
}
