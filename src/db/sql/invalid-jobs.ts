/** Runtime SQL for dsx.invalid_jobs: jobs whose payload can never be valid. */
import type { Queryable } from './queryable.ts';


/** Records an invalid job (dsx_private.record_invalid_job); the payload as JSON text when it can be. */
export async function invalidJobRecord(db: Queryable, args: { task: string; workerJobId: string; error: string; payload: unknown }): Promise<void> {
  let text: string;
  try {
    text = JSON.stringify(args.payload, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) ?? 'null';
  } catch {
    text = String(args.payload);
  }
  await db.query('select dsx_private.record_invalid_job($1, $2, $3, $4)', [args.task, args.workerJobId, args.error, text]);
}
