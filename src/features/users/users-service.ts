import type { ChangeFeed } from "../../platform/change-feed.ts";
import type { Database, Queryable } from "../../platform/database.ts";
import {
  DomainError,
  invalid,
  notFound,
  pgErrorCode,
  pgErrorCodes,
} from "../../platform/errors.ts";
import { emailPattern } from "../../platform/validation.ts";
import type { LoginThrottle } from "../auth/login-throttle.ts";
import { hashPassword, passwordProblems, verifyPassword } from "../auth/passwords.ts";

export interface NewUser {
  username: string;
  password: string;
  email?: string | undefined;
  first_name?: string | undefined;
  last_name?: string | undefined;
}

export interface User {
  id: number;
  username: string;
  email: string;
  first_name: string;
  last_name: string;
  is_active: boolean;
  date_joined: Date;
  last_login: Date | null;
  groups: string[];
}

export interface UserChanges {
  email?: string;
  first_name?: string;
  last_name?: string;
  is_active?: boolean;
  password?: string;
}

export interface Group {
  name: string;
  permissions: string[];
}

/**
 * Django's rule for a username, in ASCII only: letters that look alike in other scripts (or an
 * invisible one) would let an account pass for another in every list.
 */
export const usernamePattern = "^[\\w.@+-]{1,150}$";
const validUsername = new RegExp(usernamePattern);
const usernameRule =
  "Enter a valid username of at most 150 characters: letters, numbers and @/./+/-/_ only.";

const userSelect = `
  select u.id, u.username, u.email, u.first_name, u.last_name, u.is_active, u.date_joined,
         u.last_login,
         array(select g.name from user_group ug join app_group g on g.id = ug.group_id
               where ug.user_id = u.id order by g.name) as groups
  from app_user u`;

/**
 * A group's name: no control or invisible characters, no space (or blank that shows as one) at
 * either end. Names are shown beside each other in lists, so "Admin " or "admin" beside "Admin"
 * would pass for it; one differing from another only in letter case is refused as taken. (Letters
 * of other scripts that look alike, a Cyrillic "А", are not told apart.)
 */
const validGroupName =
  /^(?![\s\p{Z}\p{Cc}\p{Cf}\u2800\u3164\uffa0])(?:(?![\p{Cc}\p{Cf}\p{Zl}\p{Zp}]).)+(?<![\s\p{Z}\u2800\u3164\uffa0])$/u;
const groupNameRule =
  "Enter a group name without control or invisible characters, or spaces at either end.";

/** DRF's words for a taken name; one differing only in letter case is taken too. */
const alreadyExists = () =>
  new DomainError("conflict", "Invalid input.", {
    name: ["group with this name already exists."],
  });

export type UsersService = ReturnType<typeof createUsersService>;

export function createUsersService({
  db,
  changes,
  loginThrottle,
}: {
  db: Database;
  changes: ChangeFeed;
  /** Shared with sign-in: a wrong old password is a failed sign-in. */
  loginThrottle: LoginThrottle;
}) {
  /** Creates a user, optionally in groups; self-registration passes no groups (no access). */
  async function createUser(input: NewUser, groups: string[] = []): Promise<User> {
    // The API's schemas check these first; the CLI and ADMIN_USERNAME reach only this.
    if (!validUsername.test(input.username)) throw invalid({ username: [usernameRule] });
    if (input.email && !emailPattern.test(input.email))
      throw invalid({ email: ["Enter a valid email address."] });
    const problems = passwordProblems(input.password, input.username);
    if (problems.length > 0) throw invalid({ password: problems });
    const passwordHash = await hashPassword(input.password);
    try {
      const id = await db.transaction(async (tx) => {
        const { rows } = await tx.query<{ id: number }>(
          `insert into app_user (username, password_hash, email, first_name, last_name)
           values ($1, $2, $3, $4, $5) returning id`,
          [
            input.username,
            passwordHash,
            input.email ?? "",
            input.first_name ?? "",
            input.last_name ?? "",
          ],
        );
        const userId = rows[0]!.id;
        // A group named twice (`--group Admin --group Admin`) is joined once.
        for (const group of new Set(groups)) {
          const added = await tx.query(
            `insert into user_group (user_id, group_id) select $1, id from app_group where name = $2`,
            [userId, group],
          );
          if (added.rowCount === 0) throw invalid({ group: [`Group "${group}" does not exist.`] });
        }
        return userId;
      });
      return getUser(id);
    } catch (error) {
      if (pgErrorCode(error) === pgErrorCodes.uniqueViolation) {
        throw new DomainError("conflict", "Invalid input.", {
          username: ["A user with that username already exists."],
        });
      }
      throw error;
    }
  }

  async function listUsers(): Promise<User[]> {
    const { rows } = await db.query<User>(`${userSelect} order by u.id`);
    return rows;
  }

  async function getUser(id: number): Promise<User> {
    const { rows } = await db.query<User>(`${userSelect} where u.id = $1`, [id]);
    if (!rows[0]) throw notFound();
    return rows[0];
  }

  async function updateUser(id: number, update: UserChanges): Promise<User> {
    const sets: string[] = [];
    const params: unknown[] = [id];
    const set = (column: string, value: unknown) => {
      params.push(value);
      sets.push(`${column} = $${params.length}`);
    };
    if (update.password !== undefined) {
      const { username } = await getUser(id);
      const problems = passwordProblems(update.password, username);
      if (problems.length > 0) throw invalid({ password: problems });
      set("password_hash", await hashPassword(update.password));
    }
    for (const column of ["email", "first_name", "last_name", "is_active"] as const) {
      if (update[column] !== undefined) set(column, update[column]);
    }
    // One transaction, the user's row locked first: a sign-in or refresh under way either
    // finishes before it (and its tokens are revoked here) or waits and finds its password or
    // token no longer good (oauth-service.ts).
    await db.transaction(async (tx) => {
      const keep =
        update.is_active === false
          ? await keepingAnAdmin(tx, { is_active: ["This is the last active Admin."] })
          : undefined;
      if (sets.length > 0) {
        const { rowCount } = await tx.query(
          `update app_user set ${sets.join(", ")} where id = $1`,
          params,
        );
        if (rowCount === 0) throw notFound();
      }
      await keep?.();
      // A new password or a deactivation ends every session the user had.
      if (update.password !== undefined || update.is_active === false) {
        await tx.query(
          "update oauth_token set revoked_at = now() where user_id = $1 and revoked_at is null",
          [id],
        );
      }
    });
    changes.changed("app_user");
    return getUser(id);
  }

  /**
   * A person changes their own password, proving the old one. Every other session of theirs
   * ends, as after a reset (whoever learnt the old password is signed out); the session asking,
   * the family of `tokenId`, is kept, so the person stays signed in where they made the change.
   * The old password is checked as a sign-in's is, and counted with them (from `address`): a
   * stolen access token must not become a way to guess the password behind it.
   */
  async function changeOwnPassword(input: {
    userId: number;
    tokenId: number;
    address: string;
    oldPassword: string;
    newPassword: string;
  }): Promise<{ changed: true } | { changed: false; waitSeconds: number }> {
    // The throttle's key is the username as sign-in's lookup lowers it (the database's lower()).
    const { rows } = await db.query<{ username: string; account: string; password_hash: string }>(
      "select username, lower(username) as account, password_hash from app_user where id = $1 and is_active",
      [input.userId],
    );
    const user = rows[0];
    if (!user) throw notFound();
    const waitSeconds = await loginThrottle.take(user.account, input.address);
    if (waitSeconds > 0) return { changed: false, waitSeconds };
    if (!(await verifyPassword(user.password_hash, input.oldPassword)))
      throw invalid({
        old_password: ["Your old password was entered incorrectly. Please enter it again."],
      });
    await loginThrottle.succeeded(user.account, input.address);
    const problems = passwordProblems(input.newPassword, user.username);
    if (input.newPassword === input.oldPassword)
      problems.unshift("The new password is the same as the old one.");
    if (problems.length > 0) throw invalid({ new_password: problems });
    const newHash = await hashPassword(input.newPassword);
    await db.transaction(async (tx) => {
      // Only if the password checked is still the user's: a reset committed during the (slow)
      // checks stands, and this change is refused rather than undoing it.
      const { rowCount } = await tx.query(
        "update app_user set password_hash = $3 where id = $1 and password_hash = $2 and is_active",
        [input.userId, user.password_hash, newHash],
      );
      if (rowCount !== 1)
        throw invalid({
          old_password: ["Your password was changed meanwhile; sign in again with the new one."],
        });
      await tx.query(
        `update oauth_token set revoked_at = now()
         where user_id = $1 and revoked_at is null
           and family is distinct from (select family from oauth_token where id = $2)`,
        [input.userId, input.tokenId],
      );
    });
    changes.changed("app_user");
    return { changed: true };
  }

  async function deleteUser(id: number): Promise<void> {
    await db.transaction(async (tx) => {
      const keep = await keepingAnAdmin(tx, { detail: ["This is the last active Admin."] });
      const { rowCount } = await tx.query("delete from app_user where id = $1", [id]);
      if (rowCount === 0) throw notFound();
      await keep();
    });
    changes.changed("app_user");
  }

  /**
   * Call first in a transaction that may take the Admin group's last active member away
   * (deactivation, deletion, leaving the group); then call what it returns once the change is
   * made, which refuses it if it left no active Admin where there was one: nobody could
   * administer users, groups or clients again. The group's row lock makes such changes take
   * turns, so two Admins cannot each remove the other. It is NO KEY UPDATE, which a membership
   * being added (its foreign key's KEY SHARE) does not wait for: with FOR UPDATE, deleting a
   * user while the same user was added to Admin deadlocked.
   */
  async function keepingAnAdmin(
    tx: Queryable,
    refusal: Record<string, string[]>,
  ): Promise<() => Promise<void>> {
    await tx.query("select id from app_group where name = 'Admin' for no key update");
    const activeAdmins = async () =>
      Number(
        (
          await tx.query<{ n: number }>(
            `select count(*)::int as n from user_group ug
             join app_group g on g.id = ug.group_id and g.name = 'Admin'
             join app_user u on u.id = ug.user_id and u.is_active`,
          )
        ).rows[0]!.n,
      );
    const before = await activeAdmins();
    return async () => {
      if (before > 0 && (await activeAdmins()) === 0) {
        throw "detail" in refusal
          ? new DomainError("validation", refusal.detail![0]!)
          : invalid(refusal);
      }
    };
  }

  async function listGroups(): Promise<Group[]> {
    const { rows } = await db.query<Group>(
      `select g.name, array(select permission_code from group_permission gp
                            where gp.group_id = g.id order by permission_code) as permissions
       from app_group g order by g.id`,
    );
    return rows;
  }

  async function getGroup(name: string): Promise<Group> {
    const group = (await listGroups()).find((candidate) => candidate.name === name);
    if (!group) throw notFound();
    return group;
  }

  async function createGroup(name: string, permissions: string[] = []): Promise<Group> {
    if (!validGroupName.test(name)) throw invalid({ name: [groupNameRule] });
    try {
      await db.transaction(async (tx) => {
        // One group creation at a time, so two names differing in case cannot both pass the
        // check below (groups are few, and made rarely).
        await tx.query("lock table app_group in share row exclusive mode");
        const { rows: same } = await tx.query(
          "select 1 from app_group where lower(name) = lower($1)",
          [name],
        );
        if (same.length > 0) throw alreadyExists();
        const { rows } = await tx.query<{ id: number }>(
          "insert into app_group (name) values ($1) returning id",
          [name],
        );
        await replacePermissions(tx, rows[0]!.id, permissions);
      });
    } catch (error) {
      if (pgErrorCode(error) === pgErrorCodes.uniqueViolation) throw alreadyExists();
      throw error;
    }
    return getGroup(name);
  }

  async function deleteGroup(name: string): Promise<void> {
    if (name === "Admin") throw invalid({ name: ["The Admin group cannot be deleted."] });
    const { rowCount } = await db.query("delete from app_group where name = $1", [name]);
    if (rowCount === 0) throw notFound();
    changes.changed("user_group", "group_permission");
  }

  async function setGroupPermissions(name: string, permissions: string[]): Promise<Group> {
    // Without it nobody could grant any permission again, the Admin group's own included.
    if (name === "Admin" && !permissions.includes("group.change"))
      throw invalid({
        permissions: [
          "The Admin group keeps group.change, or no one could grant permissions again.",
        ],
      });
    await db.transaction(async (tx) => {
      // Locked: two edits at once each delete then insert, and without it the second's delete
      // cannot see the first's inserts (a primary key clash, or the union of both lists).
      const { rows } = await tx.query<{ id: number }>(
        "select id from app_group where name = $1 for update",
        [name],
      );
      if (!rows[0]) throw notFound();
      await replacePermissions(tx, rows[0].id, permissions);
    });
    changes.changed("group_permission");
    return getGroup(name);
  }

  async function listPermissions(): Promise<{ code: string; description: string }[]> {
    const { rows } = await db.query<{ code: string; description: string }>(
      "select code, description from permission order by code",
    );
    return rows;
  }

  async function changeMembership(action: "add" | "remove", username: string, group: string) {
    const { rows } = await db.query<{ user_id: number | null; group_id: number | null }>(
      `select (select id from app_user where lower(username) = lower($1)) as user_id,
              (select id from app_group where name = $2) as group_id`,
      [username, group],
    );
    const found = rows[0];
    const errors: Record<string, string[]> = {};
    if (!found?.user_id) errors.username = [`User "${username}" does not exist.`];
    if (!found?.group_id) errors.group = [`Group "${group}" does not exist.`];
    if (Object.keys(errors).length > 0) throw invalid(errors);
    if (action === "add") {
      await db.query(
        "insert into user_group (user_id, group_id) values ($1, $2) on conflict do nothing",
        [found!.user_id, found!.group_id],
      );
    } else {
      await db.transaction(async (tx) => {
        const keep = await keepingAnAdmin(tx, { username: ["This is the last active Admin."] });
        await tx.query("delete from user_group where user_id = $1 and group_id = $2", [
          found!.user_id,
          found!.group_id,
        ]);
        await keep();
      });
    }
    changes.changed("user_group");
  }

  /** The contract's ADMIN_USERNAME/ADMIN_PASSWORD: an Admin that exists from the first start. */
  async function ensureAdmin(username: string, password: string): Promise<boolean> {
    const { rows } = await db.query("select 1 from app_user where lower(username) = lower($1)", [
      username,
    ]);
    if (rows.length > 0) return false;
    await createUser({ username, password }, ["Admin"]);
    return true;
  }

  return {
    createUser,
    listUsers,
    getUser,
    updateUser,
    changeOwnPassword,
    deleteUser,
    listGroups,
    getGroup,
    createGroup,
    deleteGroup,
    setGroupPermissions,
    listPermissions,
    changeMembership,
    ensureAdmin,
  };
}

async function replacePermissions(
  tx: Pick<Database, "query">,
  groupId: number,
  permissions: string[],
): Promise<void> {
  const unique = [...new Set(permissions)];
  const { rows } = await tx.query<{ code: string }>(
    "select code from permission where code = any($1::text[])",
    [unique],
  );
  const known = new Set(rows.map((row) => row.code));
  const unknown = unique.filter((code) => !known.has(code));
  if (unknown.length > 0)
    throw invalid({ permissions: unknown.map((code) => `Unknown permission "${code}".`) });
  await tx.query("delete from group_permission where group_id = $1", [groupId]);
  await tx.query(
    "insert into group_permission (group_id, permission_code) select $1, unnest($2::text[])",
    [groupId, unique],
  );
}
