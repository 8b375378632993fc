-- The version a verdict is about: object stores that keep versions (S3 VersionId, Azure blob
-- versions) name the version read at scan time, and remediation acts on that version only, so a
-- newer upload is never deleted or moved by mistake. Recorded with each result and the object's
-- latest state, beside etag.
alter table dsx.scan_results add column version_id text;
alter table dsx.objects add column version_id text;

-- claim_side_effect also returns the scanned version (a change of its result type: rule 2 of sql/README.md).
drop function if exists dsx_private.claim_side_effect(bigint, bigint);
