-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- API tokens (the table and its row-level security policies: sql/migrations/0009).

-- Runs with the caller's rights (not security definer), so the grants and policies decide.
create or replace function dsx.revoke_api_token(p_name text) returns dsx.api_tokens language plpgsql volatile set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.api_tokens;
begin
  update dsx.api_tokens t set revoked_at = coalesce(t.revoked_at, now()) where t.name = p_name
  returning t.id, t.name, t.role, null::text, t.created_at, t.expires_at, t.revoked_at into v;
  if not found then
    raise exception using errcode = 'P0002', message = format('unknown API token %L', p_name),
                          hint = 'list them with: dsx-connect token list';
  end if;
  return v;
end $$;
comment on function dsx.revoke_api_token(text) is E'@resultFieldName apiToken\nRevokes an API token by name (operators only); revoking it again changes nothing.';
revoke execute on function dsx.revoke_api_token(text) from public;
grant execute on function dsx.revoke_api_token(text) to dsx_operator;
