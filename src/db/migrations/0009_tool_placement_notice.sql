-- 0002's tool trigger announces every statement on `tool`, and ingest updates a tool's offset
-- and feed rate with each report: too often to look up every tool each time. A tool deleted or
-- moved to another machine elsewhere (another server, SQL) is announced apart, as
-- `tool_placement`, so the live feed can tell its subscribers without a look per report.
create function spindle_notify_tool_placement() returns trigger language plpgsql as $$
begin
  perform pg_notify('spindle_changes', 'tool_placement');
  return null;
end
$$;

create trigger tool_placement_changed
  after update of machine_id or delete or truncate on tool
  for each statement execute function spindle_notify_tool_placement();
