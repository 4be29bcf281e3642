-- Rollups per 5 seconds, the same shape as the 1 s, 10 s and 1 min ones (0004, 0005). A 1 h
-- window asked at ~1,000 points has buckets of 3.6 s: the 10 s tier's grid keeps only 360 of
-- them, under the 2/3 the history service asks of a tier, so it read 1 s rows: 72,000 for 20
-- series, ~120 ms. The 5 s grid keeps 720 buckets and reads 14,400 rows. It is recomputed from
-- the 1 s rows by the same maintainer (features/history/rollups.ts), and partitioned by day like
-- axis_data_1s, so retention drops whole days.

create table axis_data_5s (
  axis_id bigint not null references axis (axis_id) on delete cascade,
  update_timestamp timestamptz not null,   -- the bucket's start, a multiple of 5 s since the epoch
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

-- A 5 s partition for each day that has 1 s rollups (named like theirs: axis_data_5s_YYYYMMDD).
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
      'create table if not exists %I partition of axis_data_5s for values from (%L) to (%L)',
      'axis_data_5s_' || substr(part.name, 14), day, day + interval '1 day');
  end loop;
end
$$;

-- Filled from the 1 s rollups that exist, as the maintainer would have.
insert into axis_data_5s
select axis_id, date_bin('5 seconds', update_timestamp, timestamptz '1970-01-01 00:00:00+00'),
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
