-- Two corrections (failed scans drain; credentials must be a JSON object): functions only. Since functions moved to sql/functions, this migration has nothing
-- left to do; it stays so that the numbering (and the databases that applied it) keep their history.
select 1;
