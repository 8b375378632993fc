-- Before the webhook guard was rebuilt, a failed delivery recorded the first 512 bytes of the
-- receiver's response body in its ledger detail ("webhook https://host/path answered HTTP 500: <body>"),
-- readable by every API viewer, and the audit log repeated it. New failures record only the status and
-- its standard reason phrase; this removes the bodies already written. The audit log is append-only
-- by trigger: the trigger is disabled for this one statement, in this transaction, and the scrub is
-- itself recorded.
update dsx.side_effects
   set detail = regexp_replace(detail, '^(webhook \S+ answered HTTP [0-9]{3}): .*$', '\1')
 where kind = 'notification'
   and detail ~ '^webhook \S+ answered HTTP [0-9]{3}: ';

-- (On a new database the trigger does not exist yet: the function files create it after the
-- migrations, and there is nothing to scrub.)
do $$
begin
  if not exists (select 1 from pg_trigger where tgname = 'audit_log_append_only' and tgrelid = 'dsx.audit_log'::regclass) then
    return;
  end if;
  alter table dsx.audit_log disable trigger audit_log_append_only;
  with s as (
    update dsx.audit_log a
       set detail = jsonb_set(a.detail, '{detail}', to_jsonb(regexp_replace(a.detail->>'detail', '^(webhook \S+ answered HTTP [0-9]{3}): .*$', '\1')))
     where a.action like 'notification.%'
       and a.detail->>'detail' ~ '^webhook \S+ answered HTTP [0-9]{3}: '
    returning 1)
  insert into dsx.audit_log (actor, action, detail)
  select 'dsx-connect', 'audit.webhook_bodies_scrubbed', jsonb_build_object('entries', count(*)) from s having count(*) > 0;
  alter table dsx.audit_log enable trigger audit_log_append_only;
end $$;
