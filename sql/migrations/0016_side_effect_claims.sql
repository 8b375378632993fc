-- Side effects run outside any transaction: claim (commit), perform, record (commit). A claimed row is
-- 'executing' and names the graphile-worker job that claimed it; that job's retries (after a failure,
-- or after a crash and the release of its lock) continue the claim, while a duplicate job for the
-- same decision leaves it to the holder as long as the holder's job exists. Before, the ledger row
-- was locked in a transaction held open for the whole webhook call (up to 10 s) or file move, in the
-- pool the scan and finalize batchers share.
alter table dsx.side_effects drop constraint side_effects_status_check;
alter table dsx.side_effects add constraint side_effects_status_check
  check (status in ('pending', 'executing', 'done', 'already_done', 'not_supported', 'skipped', 'failed'));
alter table dsx.side_effects add column claimed_by_job bigint;
alter table dsx.side_effects add column claimed_at timestamptz;
comment on column dsx.side_effects.claimed_by_job is 'The graphile-worker job executing this side effect (status executing).';

-- finish_side_effect gains the claiming job (a signature change: rule 2 of sql/README.md).
drop function if exists dsx_private.finish_side_effect(bigint, text, text);
