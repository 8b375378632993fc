-- Destructive policies need intent. A policy that deletes objects (remediation "delete" for any
-- outcome) or acts on clean objects (any remediation of "clean" other than "none") is accepted only
-- with an explicit confirmation, recorded on the scope: who gave it and when. The rule itself is in
-- sql/functions/20_catalog.sql (dsx_private.policy_destructive, trigger scopes_policy_checks).
--
-- Policies stored before this migration keep working and show no confirmation (null): re-set them
-- with the confirmation to record one.
alter table dsx.scopes add column destructive_confirmed_by text;
alter table dsx.scopes add column destructive_confirmed_at timestamptz;

-- Written only by dsx.create_scope / dsx.set_scope_policy (p_allow_destructive): the API roles have no
-- update grant on them, and GraphQL shows them read-only.
comment on column dsx.scopes.destructive_confirmed_by is
  E'@behavior -insert -update\nWho confirmed the scope''s destructive policy (delete, or a remediation of clean objects); null when the policy is not destructive.';
comment on column dsx.scopes.destructive_confirmed_at is
  E'@behavior -insert -update\nWhen the scope''s destructive policy was confirmed; null when the policy is not destructive.';

-- dsx.create_scope and dsx.set_scope_policy gain p_allow_destructive (a signature change: rule 2 of
-- sql/README.md); sql/functions/20_catalog.sql defines them again, with their grants.
drop function if exists dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean);
drop function if exists dsx.set_scope_policy(bigint, jsonb);
