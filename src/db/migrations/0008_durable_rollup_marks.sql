-- Which minutes of which axes wait to be rolled up, kept in the commit that wrote their samples,
-- so a crash cannot lose them. The rollup maintainer (features/history/rollups.ts) learns of
-- each commit in memory and recomputes its buckets within a second; what a crash takes from
-- memory, a restart recomputes over the last minutes before now and before each axis's newest
-- sample.
-- That covers live data, and only live data: a sample written more than five minutes late (an
-- adapter's backfill, a COPY) or more than one ahead is marked here, per axis and minute with the
-- span of sample times marked, and the mark is deleted by the recompute that covers it, in the
-- same transaction. Live samples are left unmarked: marking them would add a write to every
-- producer's commit for what the restart already covers.
create table rollup_pending (
  axis_id bigint not null,
  minute timestamptz not null,
  first_time timestamptz not null,
  last_time timestamptz not null,
  primary key (axis_id, minute)
);
-- The sweep goes by minute, oldest first, whatever the axis.
create index rollup_pending_minute on rollup_pending (minute);

-- Updates, not `do nothing`, on a mark that exists: the row lock makes a recompute that deletes
-- the mark meanwhile wait for this commit, and so read its samples; a mark left alone would be
-- deleted under a commit that counted on it.
create function spindle_mark_rollups() returns trigger language plpgsql as $$
begin
  insert into rollup_pending (axis_id, minute, first_time, last_time)
  select axis_id, date_trunc('minute', update_timestamp), min(update_timestamp), max(update_timestamp)
  from written
  where update_timestamp < now() - interval '5 minutes'
     or update_timestamp > now() + interval '1 minute'
  group by 1, 2
  order by 1, 2  -- two commits marking alike lock their marks in one order
  on conflict (axis_id, minute) do update set
    first_time = least(rollup_pending.first_time, excluded.first_time),
    last_time = greatest(rollup_pending.last_time, excluded.last_time);
  return null;
end $$;

-- Statement triggers: one insert per statement, whatever its rows. An update is marked at the
-- sample's new time; the resource endpoints (the only writers that change or delete samples)
-- also tell the maintainer of the old one. Deletes are not marked: an axis's cascade would pass
-- every one of its samples through the trigger.
create trigger axis_data_rollups_on_insert after insert on axis_data
  referencing new table as written
  for each statement execute function spindle_mark_rollups();
create trigger axis_data_rollups_on_update after update on axis_data
  referencing new table as written
  for each statement execute function spindle_mark_rollups();
