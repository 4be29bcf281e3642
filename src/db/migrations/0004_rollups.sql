-- Rollups of every axis field per 1 second and per 1 minute: count, min, max, sum and last of
-- each measurement, and whether the axis was homed throughout / at all / at the end. History
-- reads them instead of raw samples when a window's buckets are at least that wide, so a day or
-- a month of data answers as fast as fifteen minutes. They are recomputed from raw samples for
-- the buckets each commit touched (features/history/rollups.ts), so retries and late rows never
-- double-count. The 1 s table is partitioned by day like axis_data; the 1 min table is small.

create table axis_data_1s (
  axis_id bigint not null references axis (axis_id) on delete cascade,
  update_timestamp timestamptz not null,   -- the bucket's start
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

create table axis_data_1m (
  axis_id bigint not null references axis (axis_id) on delete cascade,
  update_timestamp timestamptz not null,   -- the bucket's start
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
);
