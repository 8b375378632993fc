-- Pending (branch ssrf, issue 13 item 3): NOT applied by the migrator; the lead places it.
--
-- Before this branch a failed webhook delivery recorded the first 512 bytes of the receiver's body in
-- its ledger detail ("webhook https://host/path answered HTTP 500: <body>"), readable by every API
-- viewer. New failures record only the status and its standard reason phrase. This scrubs the body
-- from rows already written; it is idempotent (a scrubbed row no longer matches).
--
-- dsx.audit_log holds the same text in detail->>'detail' but is append-only by trigger
-- (audit_log_append_only); scrubbing it too is the lead's call (see notes/ssrf.md).
update dsx.side_effects
   set detail = regexp_replace(detail, '^(webhook \S+ answered HTTP [0-9]{3}): .*$', '\1')
 where kind = 'notification'
   and detail ~ '^webhook \S+ answered HTTP [0-9]{3}: ';
