/**
 * The canonical job envelope and the body of every job type: the one module that owns job payloads.
 * Every task parses its payload here first; an invalid payload fails the job with a clear message and
 * changes nothing. SQL functions in `sql/` build the same shape (dsx_private.job_envelope).
 *
 * Glossary
 * - job_id: our id for one logical job, stable across graphile-worker retries.
 * - correlation_id: one per user request or storage event, carried through every descendant job.
 * - root_job_id / parent_job_id: causality (the FullScanScopeJob is the root of a full scan's jobs).
 * - idempotency_key: deterministic; a job and its effects happen once per key.
 * - source_type / source_entity_id: where the work came from (a full scan id, a storage event id).
 */
import { z } from 'zod';

/** Task identifiers (graphile-worker task names = files in tasks/). */
export const TASKS = {
  fullScanScope: 'full-scan-scope',
  enumerateScopePage: 'enumerate-scope-page',
  scanObject: 'scan-object',
  finalizeScanObject: 'finalize-scan-object',
  applyRemediation: 'apply-remediation',
  sendNotification: 'send-notification',
  monitorEventIngest: 'monitor-event-ingest',
  // The monitor lane's ScanObjectJob and FinalizeScanObjectJob (monitoring and manual scans): the same
  // bodies and code as the full-scan tasks, under names of their own so that a runner of their own
  // fetches them (src/worker/run.ts, LANES).
  monitorScanObject: 'monitor-scan-object',
  monitorFinalizeScanObject: 'monitor-finalize-scan-object',
} as const;
export type TaskName = (typeof TASKS)[keyof typeof TASKS];
/** The task names of a ScanObjectJob: the full-scan lane's and the monitor lane's. */
export type ScanTask = typeof TASKS.scanObject | typeof TASKS.monitorScanObject;
/** The task names of a FinalizeScanObjectJob, likewise. */
export type FinalizeTask = typeof TASKS.finalizeScanObject | typeof TASKS.monitorFinalizeScanObject;
/**
 * The finalize task of each scan task: a finalize job stays in the lane its scan ran in. A job is in a
 * lane by its task name (= its envelope's job_type), chosen by its producer; jobs queued under the
 * full-scan names before the monitor lane existed keep running there.
 */
export const FINALIZE_TASK_OF: Readonly<Record<ScanTask, FinalizeTask>> = {
  [TASKS.scanObject]: TASKS.finalizeScanObject,
  [TASKS.monitorScanObject]: TASKS.monitorFinalizeScanObject,
};

/**
 * Tasks that graphile-worker's crontab schedules (src/worker/run.ts). Their payload is not an envelope
 * but the crontab's own: `{"_cron": {"ts", "backfilled"}}`, the schedule slot the job stands for.
 */
export const CRON_TASKS = {
  retentionSweep: 'retention-sweep',
} as const;
export type CronTaskName = (typeof CRON_TASKS)[keyof typeof CRON_TASKS];
/** Every task a worker runs: the pipeline's (envelope payloads) and the scheduled ones. */
export type WorkerTaskName = TaskName | CronTaskName;

const id = z.union([z.number().int().positive(), z.string().regex(/^[1-9]\d{0,17}$/).transform(Number)]);
const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 timestamp');

export const envelopeSchema = z.object({
  schema_version: z.literal(1),
  job_type: z.enum(Object.values(TASKS) as [TaskName, ...TaskName[]]),
  job_id: z.uuid(),
  correlation_id: z.uuid(),
  root_job_id: z.uuid(),
  parent_job_id: z.uuid().nullable(),
  idempotency_key: z.string().min(1).max(600),
  source_type: z.enum(['full_scan', 'monitor', 'manual']),
  source_entity_id: z.string().min(1),
  integration_id: id,
  /** Null only for a MonitorEventIngestJob of events whose scope is not resolved yet. */
  scope_id: id.nullable(),
  object_identity: z.string().min(1).max(8192).nullable(),
  requested_by: z.string().min(1),
  created_at: isoTime,
});
export type Envelope = z.infer<typeof envelopeSchema>;
/** The envelope of every job except MonitorEventIngestJob: it always names its scope. */
type ScopedEnvelope = Omit<Envelope, 'scope_id'> & { scope_id: number };

export const fullScanScopeBody = z.object({ full_scan_id: id });
export const enumerateScopePageBody = z.object({
  full_scan_id: id,
  page_no: z.number().int().min(0),
  cursor: z.string().nullable(),
});
export const scanObjectBody = z.object({
  size: z.number().int().min(0).nullable(),
  etag: z.string().nullable(),
  mtime: z.string().nullable(),
  /** The version listed or named by the event, where the store keeps versions (absent from older jobs). */
  version_id: z.string().nullable().optional(),
  /** Times this job waited for a store that kept throttling (src/pipeline/scan.ts), not counted as attempts. */
  throttle_deferrals: z.number().int().min(0).optional(),
});

/** What a scan produced: a scanner verdict, or a failure that ends the object without one. */
export const scanOutcomeSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('verdict'),
    http_status: z.number().int(),
    response: z.record(z.string(), z.unknown()),
  }),
  z.object({
    kind: z.literal('failure'),
    stage: z.enum(['fetch', 'scanner', 'policy', 'cancel']),
    failure: z.string().min(1),
    message: z.string(),
  }),
]);
export type ScanOutcome = z.infer<typeof scanOutcomeSchema>;

export const finalizeScanObjectBody = z.object({
  result: scanOutcomeSchema,
  attempts: z.number().int().min(0),
  fetch_ms: z.number().int().min(0).nullable(),
  scan_ms: z.number().int().min(0).nullable(),
  size: z.number().int().min(0).nullable(),
  etag: z.string().nullable(),
  mtime: z.string().nullable(),
  /** The version the verdict is about (the one read), where the store keeps versions. */
  version_id: z.string().nullable().optional(),
});

export const sideEffectBody = z.object({
  side_effect_id: id,
  action: z.enum(['tag', 'move', 'delete', 'webhook']),
  outcome: z.string(),
  reason: z.string().nullable(),
  scan_result_id: id,
  channel_id: id.nullable(),
});

export const monitorEventIngestBody = z.object({
  event_ids: z.array(id).min(1).max(100_000),
  /** A trailing (debounced) scan of one deferred event, rather than the first look at new events. */
  trailing: z.boolean(),
});

/** The body schema of each job type. */
export const JOB_BODIES = {
  [TASKS.fullScanScope]: fullScanScopeBody,
  [TASKS.enumerateScopePage]: enumerateScopePageBody,
  [TASKS.scanObject]: scanObjectBody,
  [TASKS.finalizeScanObject]: finalizeScanObjectBody,
  [TASKS.applyRemediation]: sideEffectBody,
  [TASKS.sendNotification]: sideEffectBody,
  [TASKS.monitorEventIngest]: monitorEventIngestBody,
  [TASKS.monitorScanObject]: scanObjectBody,
  [TASKS.monitorFinalizeScanObject]: finalizeScanObjectBody,
} as const;

/** The payload graphile-worker's crontab gives a scheduled job (its `makeJobForItem`). */
export const cronPayloadSchema = z.object({
  _cron: z.object({
    /** The schedule slot: the minute the job is due for, ISO 8601. */
    ts: isoTime,
    /** Scheduled at start for a slot missed while no worker ran (the cron item's backfillPeriod). */
    backfilled: z.boolean().optional(),
  }),
});

/** A parsed scheduled job: its slot is its identity (one job per slot, however many workers run). */
export interface CronJob<T extends CronTaskName> {
  job_type: T;
  /** `<task>@<slot>`: the same for every attempt of the slot's job. */
  job_id: string;
  /** The same as job_id: a scheduled run is its own request. */
  correlation_id: string;
  body: { slot: string; backfilled: boolean };
}

type Bodies = typeof JOB_BODIES;
/** A parsed job of type T: the envelope plus its typed body (a scheduled job: its slot). */
export type Job<T extends WorkerTaskName> = T extends CronTaskName
  ? CronJob<T>
  : T extends TaskName
    ? (T extends 'monitor-event-ingest' ? Envelope : ScopedEnvelope) & { job_type: T; body: z.infer<Bodies[T]> }
    : never;

/**
 * Thrown for a payload that does not match its schema. Not retryable: the payload will not change. The
 * task frame records such a job in dsx.invalid_jobs and completes it (src/worker/define-task.ts).
 */
export class InvalidPayloadError extends Error {
  constructor(task: string, detail: string) {
    super(`invalid ${task} payload: ${detail}`);
    this.name = 'InvalidPayloadError';
  }
}

/** The envelope schema version this build reads and writes. */
export const SCHEMA_VERSION = 1;

/**
 * Thrown for a payload of a newer schema version than this build knows: a rolling deploy, where a newer
 * producer already writes it. Retryable: a worker of the newer version will take it.
 */
export class NewerSchemaVersionError extends Error {
  readonly version: number;
  constructor(task: string, version: number) {
    super(`${task} payload has schema_version ${version}, newer than this worker's ${SCHEMA_VERSION}: it is retried until an upgraded worker takes it`);
    this.name = 'NewerSchemaVersionError';
    this.version = version;
  }
}

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(payload)'}: ${i.message}`)
    .join('; ');
}

const jobSchemas = new Map<TaskName, z.ZodType>();

/** The full schema of one job type, built once (zod compiles a schema on first use: ~20% of a worker's CPU when rebuilt per job). */
function jobSchema(task: TaskName): z.ZodType {
  let schema = jobSchemas.get(task);
  if (!schema) {
    schema = envelopeSchema.extend({
      job_type: z.literal(task),
      ...(task === TASKS.monitorEventIngest ? {} : { scope_id: id }),
      body: JOB_BODIES[task],
    });
    jobSchemas.set(task, schema);
  }
  return schema;
}

/** What a producer puts in the queue for a job of type T (the consumer validates it: parseJob). */
export type JobPayload<T extends TaskName> = (T extends 'monitor-event-ingest' ? z.input<typeof envelopeSchema> : Omit<z.input<typeof envelopeSchema>, 'scope_id'> & { scope_id: number | string }) & {
  job_type: T;
  body: z.input<Bodies[T]>;
};

/*
 * The task names and payloads of the queue, for graphile-worker's typings (addJob, TaskList, Task):
 * a task list or an addJob naming a task that does not exist, or a payload of the wrong shape, is a
 * type error. Finalize jobs (of both lanes) are batch jobs: an array of envelopes (a single one is still accepted).
 */
declare global {
  namespace GraphileWorker {
    interface Tasks {
      'full-scan-scope': JobPayload<'full-scan-scope'>;
      'enumerate-scope-page': JobPayload<'enumerate-scope-page'>;
      'scan-object': JobPayload<'scan-object'>;
      'finalize-scan-object': JobPayload<'finalize-scan-object'> | JobPayload<'finalize-scan-object'>[];
      'apply-remediation': JobPayload<'apply-remediation'>;
      'send-notification': JobPayload<'send-notification'>;
      'monitor-event-ingest': JobPayload<'monitor-event-ingest'>;
      'retention-sweep': z.input<typeof cronPayloadSchema>;
      'monitor-scan-object': JobPayload<'monitor-scan-object'>;
      'monitor-finalize-scan-object': JobPayload<'monitor-finalize-scan-object'> | JobPayload<'monitor-finalize-scan-object'>[];
    }
  }
}

function isCronTask(task: WorkerTaskName): task is CronTaskName {
  return (Object.values(CRON_TASKS) as string[]).includes(task);
}

/** Parses an `unknown` payload as a job of type `task`, or throws InvalidPayloadError naming each problem. */
export function parseJob<T extends WorkerTaskName>(task: T, payload: unknown): Job<T> {
  if (isCronTask(task)) {
    const parsed = cronPayloadSchema.safeParse(payload);
    if (!parsed.success) throw new InvalidPayloadError(task, describe(parsed.error));
    const id = `${task}@${parsed.data._cron.ts}`;
    const job: CronJob<typeof task> = {
      job_type: task,
      job_id: id,
      correlation_id: id,
      body: { slot: parsed.data._cron.ts, backfilled: parsed.data._cron.backfilled ?? false },
    };
    return job as Job<T>;
  }
  const version = (payload as { schema_version?: unknown } | null)?.schema_version;
  if (typeof version === 'number' && Number.isInteger(version) && version > SCHEMA_VERSION) throw new NewerSchemaVersionError(task, version);
  const parsed = jobSchema(task as TaskName).safeParse(payload);
  if (!parsed.success) throw new InvalidPayloadError(task, describe(parsed.error));
  return parsed.data as Job<T>;
}

/** Builds the envelope of a job derived from `parent` (same correlation and root, parent = its job id). */
export function childEnvelope<T extends TaskName>(
  parent: ScopedEnvelope,
  jobType: T,
  idempotencyKey: string,
  body: z.input<Bodies[T]>,
): ScopedEnvelope & { job_type: T; body: z.input<Bodies[T]> } {
  return {
    ...parent,
    job_type: jobType,
    job_id: crypto.randomUUID(),
    parent_job_id: parent.job_id,
    idempotency_key: idempotencyKey,
    created_at: new Date().toISOString(),
    body,
  };
}
