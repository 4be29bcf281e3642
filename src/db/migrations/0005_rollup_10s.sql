-- Rollups per 10 seconds, the same shape as the 1 s and 1 min ones (0004). Between them, 1 s
-- rows are 60 per bucket of 1 min: a window of a few hours asked at ~1,000 points (buckets of
-- 10–30 s) read 10–30 one-second rows per bucket. With this tier it reads 1–3. It is recomputed
-- from the 1 s rows by the same maintainer (features/history/rollups.ts), and partitioned by day
-- like axis_data_1s, so retention drops whole days.

create table axis_data_10s (
  axis_id bigint not null references axis (axis_id) on delete cascade,
  update_timestamp timestamptz not null,   -- the bucket's start, a multiple of 10 s since the epoch
  samples integer not null,
  last_timestamp timestamptz not null,     -- the newest sample in the bucket (for *_last)
  actual_position_min double precision not null,
  actual_position_max double precision not null,
  actual_position_sum double precision not null,
  actual_position_last double precision not null,
  target_position_min double precision not null,
  target_position_max double precision not null,
  target_position_sum double precision not null,
  target_position_last double precision not null,
  distance_to_go_min double precision not null,
  distance_to_go_max double precision not null,
  distance_to_go_sum double precision not null,
  distance_to_go_last double precision not null,
  velocity_min double precision not null,
  velocity_max double precision not null,
  velocity_sum double precision not null,
  velocity_last double precision not null,
  acceleration_min double precision not null,
  acceleration_max double precision not null,
  acceleration_sum double precision not null,
  acceleration_last double precision not null,
  homed_all boolean not null,
  homed_any boolean not null,
  homed_last boolean not null,
  primary key (axis_id, update_timestamp)
) partition by range (update_timestamp);

-- A 10 s partition for each day that has 1 s rollups (named like theirs: axis_data_10s_YYYYMMDD).
do $$
declare
  part record;
  day timestamptz;
begin
  for part in
    select c.relname as name from pg_inherits i
    join pg_class c on c.oid = i.inhrelid
    join pg_class p on p.oid = i.inhparent
    where p.relname = 'axis_data_1s' and p.relnamespace = to_regnamespace(current_schema())::oid
      and c.relname ~ '^axis_data_1s_\d{8}$'
  loop
    day := to_timestamp(substr(part.name, 14), 'YYYYMMDD') at time zone 'UTC';
    execute format(
      'create table if not exists %I partition of axis_data_10s for values from (%L) to (%L)',
      'axis_data_10s_' || substr(part.name, 14), day, day + interval '1 day');
  end loop;
end
$$;

-- Filled from the 1 s rollups that exist, as the maintainer would have.
insert into axis_data_10s
select axis_id, date_bin('10 seconds', update_timestamp, timestamptz '1970-01-01 00:00:00+00'),
       sum(samples)::int, max(last_timestamp),
       min(actual_position_min), max(actual_position_max), sum(actual_position_sum),
       (array_agg(actual_position_last order by last_timestamp desc))[1],
       min(target_position_min), max(target_position_max), sum(target_position_sum),
       (array_agg(target_position_last order by last_timestamp desc))[1],
       min(distance_to_go_min), max(distance_to_go_max), sum(distance_to_go_sum),
       (array_agg(distance_to_go_last order by last_timestamp desc))[1],
       min(velocity_min), max(velocity_max), sum(velocity_sum),
       (array_agg(velocity_last order by last_timestamp desc))[1],
       min(acceleration_min), max(acceleration_max), sum(acceleration_sum),
       (array_agg(acceleration_last order by last_timestamp desc))[1],
       bool_and(homed_all), bool_or(homed_any),
       (array_agg(homed_last order by last_timestamp desc))[1]
from axis_data_1s
group by 1, 2;
