-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Foundation: the functions that table definitions themselves use (a check constraint, an index
-- expression). This file is applied BEFORE the versioned migrations, so it may use nothing but
-- PostgreSQL's built-ins and the two schemas, which it creates on a new database.

create schema if not exists dsx;
create schema if not exists dsx_private;

-- Stable hash of an object identity, used where identities can be longer than a btree entry may be
-- (paths of 4,000 bytes exist). convert_to() depends only on the database encoding, which never changes
-- for a database, so this is immutable in practice. Used by the index monitor_events_external_key.
create or replace function dsx_private.identity_hash(p_identity text) returns text
language sql immutable parallel safe set search_path = pg_catalog, pg_temp as $$
  select encode(sha256(convert_to(p_identity, 'UTF8')), 'hex')
$$;

-- Returns null when the policy is valid, else a message saying what is wrong. Used by the check
-- constraint scopes_policy_valid.
-- Shape: {"<outcome>": {"remediation": "none|tag|move|delete", "tag": true|false,
--                       "notify": true|false|["channel", ...]}}
-- `tag` puts the verdict on the object (dsx-verdict, dsx-scanned-at) besides any other remediation.
create or replace function dsx_private.policy_error(p jsonb) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  k text;
  v jsonb;
  f text;
begin
  if jsonb_typeof(p) is distinct from 'object' then
    return 'policy must be a JSON object mapping outcomes to {"remediation": ..., "notify": ...}';
  end if;
  for k, v in select * from jsonb_each(p) loop
    if k not in ('clean', 'malicious', 'unable_to_scan', 'unsupported_type', 'fetch_failed', 'timeout', 'policy_blocked') then
      return format('policy: unknown outcome %L (expected one of clean, malicious, unable_to_scan, unsupported_type, fetch_failed, timeout, policy_blocked)', k);
    end if;
    if jsonb_typeof(v) <> 'object' then
      return format('policy.%s must be an object like {"remediation": "move", "notify": true}', k);
    end if;
    for f in select jsonb_object_keys(v) loop
      if f not in ('remediation', 'notify', 'tag') then
        return format('policy.%s: unknown field %L (expected remediation, tag, notify)', k, f);
      end if;
    end loop;
    if v ? 'remediation' and (jsonb_typeof(v->'remediation') <> 'string' or v->>'remediation' not in ('none', 'tag', 'move', 'delete')) then
      return format('policy.%s.remediation must be one of none, tag, move, delete (got %s)', k, v->'remediation');
    end if;
    if v ? 'tag' and jsonb_typeof(v->'tag') <> 'boolean' then
      return format('policy.%s.tag must be true or false (got %s)', k, v->'tag');
    end if;
    if v ? 'notify' and jsonb_typeof(v->'notify') not in ('boolean', 'array') then
      return format('policy.%s.notify must be true, false or a list of channel names (got %s)', k, v->'notify');
    end if;
    if jsonb_typeof(v->'notify') = 'array' and exists (
      select 1 from jsonb_array_elements(v->'notify') e where jsonb_typeof(e) <> 'string') then
      return format('policy.%s.notify: channel names must be strings', k);
    end if;
  end loop;
  return null;
end $$;
