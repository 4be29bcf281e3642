-- A sign-in writes app_user.last_login, and the statement trigger of 0002 announced that as a
-- change to users: every server emptied its token cache and looked up every live socket's token
-- again, once per sign-in. Only the columns a token's principal is made of (and the password,
-- whose reset revokes tokens) announce a change now.
drop trigger app_user_changed on app_user;
create trigger app_user_changed
  after update of username, is_active, password_hash or delete on app_user
  for each statement execute function spindle_notify_change();
