-- Statement-level triggers announce every change to the small, read-mostly tables that servers
-- cache (tokens and permissions, the machine catalog). Any writer, this server, another one or a
-- CLI process, is heard: each server LISTENs on `spindle_changes` and drops what it cached.
-- axis_data is never cached, so it has no trigger and its inserts pay nothing.

create function spindle_notify_change() returns trigger language plpgsql as $$
begin
  perform pg_notify('spindle_changes', tg_table_name);
  return null;
end
$$;

create trigger machine_changed after insert or update or delete or truncate on machine
  for each statement execute function spindle_notify_change();
create trigger axis_changed after insert or update or delete or truncate on axis
  for each statement execute function spindle_notify_change();
create trigger tool_changed after insert or update or delete or truncate on tool
  for each statement execute function spindle_notify_change();
create trigger tool_usage_changed after insert or update or delete or truncate on tool_usage
  for each statement execute function spindle_notify_change();
create trigger app_user_changed after update or delete on app_user
  for each statement execute function spindle_notify_change();
create trigger user_group_changed after insert or update or delete on user_group
  for each statement execute function spindle_notify_change();
create trigger group_permission_changed after insert or update or delete on group_permission
  for each statement execute function spindle_notify_change();
create trigger oauth_token_changed after update or delete on oauth_token
  for each statement execute function spindle_notify_change();
create trigger oauth_client_changed after update or delete on oauth_client
  for each statement execute function spindle_notify_change();
