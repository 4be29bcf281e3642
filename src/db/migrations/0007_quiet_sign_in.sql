-- Each announcement of 0002's triggers empties every server's token cache and looks up every
-- live socket's token again, so only changes to what a token's principal is made of announce
-- one now.
-- A sign-in writes app_user.last_login: only the columns a principal is read from (and the
-- password, whose reset revokes tokens) announce a change to users.
drop trigger app_user_changed on app_user;
create trigger app_user_changed
  after update of username, is_active, password_hash or delete on app_user
  for each statement execute function spindle_notify_change();
-- The hourly purge deletes expired tokens, which nothing accepts anyway. Tokens are revoked by
-- update; they are deleted with their user or client, whose own triggers announce it.
drop trigger oauth_token_changed on oauth_token;
create trigger oauth_token_changed after update on oauth_token
  for each statement execute function spindle_notify_change();
