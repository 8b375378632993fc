-- A job whose payload can never be valid (it does not match its schema) is recorded here, with why,
-- and completed: retrying it (up to 25 times over days) changes nothing. A payload of a newer schema
-- version (a rolling deploy: a newer producer, an older consumer) is not invalid: it is retried until a
-- worker that understands it takes it.
create table dsx.invalid_jobs (
  id bigint generated always as identity primary key,
  task text not null,
  -- graphile-worker's id of the job (gone from its queue once recorded here).
  worker_job_id bigint,
  error text not null,
  payload jsonb,
  recorded_at timestamptz not null default now()
);
comment on table dsx.invalid_jobs is E'@behavior -insert -update -delete\nJobs whose payload did not match their schema: recorded with the error and completed, not retried.';
create index invalid_jobs_recorded_idx on dsx.invalid_jobs (recorded_at);
grant select on dsx.invalid_jobs to dsx_viewer;
