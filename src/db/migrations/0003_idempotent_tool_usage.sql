-- A retried ingest batch must not log the same tool-usage report twice: like axis samples,
-- a report is unique per machine and instant. The unique index replaces the plain one.
drop index tool_usage_machine_time_idx;
alter table tool_usage
  add constraint tool_usage_machine_time_key unique (machine_id, update_timestamp);
