-- API tokens in the API, guarded by row-level security.
--
-- Which token a caller may see is a question about rows, not tables: an operator manages every token,
-- a viewer may see only the token it is calling with (its own role, expiry, revocation), and nobody
-- reads a token's hash through the API. Grants decide the columns and commands, RLS policies the rows,
-- and PostgreSQL enforces both under the role the server switches each request to (dsx_viewer /
-- dsx_operator, with the caller in the setting dsx.subject: 'token:<name>' for an API token). The
-- server's own connection owns the table and is not subject to the policies: it looks tokens up by hash.
--
-- The table moves from dsx_private to dsx so that PostGraphile can reflect it; PostgreSQL 14 has no
-- security_invoker views, and a plain view would read the table with its owner's rights, past RLS.
alter table dsx_private.api_tokens set schema dsx;

comment on table dsx.api_tokens is
  E'@behavior -insert -update -delete\nAPI tokens (dsx-connect token create). Operators see all of them; a viewer only the one it calls with. The token itself is never stored, its hash never shown.';

comment on column dsx.api_tokens.token_sha256 is E'@behavior -*\nSHA-256 of the token: readable by no API role.';

comment on constraint api_tokens_token_sha256_key on dsx.api_tokens is E'@behavior -*';

grant select (id, name, role, created_at, expires_at, revoked_at) on dsx.api_tokens to dsx_viewer;

grant update (revoked_at) on dsx.api_tokens to dsx_operator;

alter table dsx.api_tokens enable row level security;

create policy api_tokens_operator_read on dsx.api_tokens for select to dsx_operator using (true);

create policy api_tokens_read_own on dsx.api_tokens for select to dsx_viewer
  using ('token:' || name = current_setting('dsx.subject', true));

create policy api_tokens_operator_revoke on dsx.api_tokens for update to dsx_operator using (true) with check (true);
