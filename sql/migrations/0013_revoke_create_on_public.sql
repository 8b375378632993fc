-- Databases migrated before migration 0001 revoked CREATE on schema public from PUBLIC get the same
-- here (a repeat is harmless). See 0001 for why.
do $$
begin
  revoke create on schema public from public;
exception when insufficient_privilege then
  raise warning 'could not revoke CREATE on schema public from PUBLIC (%): run it as the owner of schema public', sqlerrm;
end $$;
