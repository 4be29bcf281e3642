import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildTestApp,
  type TestApp,
  testClient,
  testPassword,
  uniqueName,
} from "../../../test/helpers/app.ts";
import { testDatabaseKind } from "../../../test/helpers/database.ts";
import { snapshot } from "../../../test/helpers/factories.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

const register = (payload: unknown) =>
  t.inject({ method: "POST", url: "/register/", payload: payload as object });

describe("POST /register/", () => {
  it("creates a user in no group, who can sign in but sees no machine data", async () => {
    const username = uniqueName("reg");
    const answer = await register({
      username,
      password: testPassword,
      email: "a@example.com",
      first_name: "Ada",
      last_name: "L",
    });
    expect(answer.statusCode).toBe(201);
    expect(answer.json()).toEqual({ message: "User created successfully" });
    const token = await t.token({ grant_type: "password", username, password: testPassword });
    expect(token.statusCode).toBe(200);
    const machines = await t.inject({
      method: "GET",
      url: "/data/machines/",
      headers: { authorization: `Bearer ${token.json().access_token}` },
    });
    expect(machines.statusCode).toBe(403);
  });

  it("hashes the password with Argon2id", async () => {
    const username = uniqueName("hash");
    await register({ username, password: testPassword });
    const { rows } = await t.database.db.query<{ password_hash: string }>(
      "select password_hash from app_user where username = $1",
      [username],
    );
    expect(rows[0]!.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(rows[0]!.password_hash).not.toContain(testPassword);
  });

  it("refuses a username taken in any letter case", async () => {
    const username = uniqueName("Case");
    await register({ username, password: testPassword });
    const before = await snapshot(t);
    const again = await register({ username: username.toUpperCase(), password: testPassword });
    expect(again.statusCode).toBe(400);
    expect(again.json()).toEqual({ username: ["A user with that username already exists."] });
    expect(await snapshot(t)).toBe(before);
  });

  it.each([
    [{ password: testPassword }, "username", "This field is required."],
    [{ username: "someone" }, "password", "This field is required."],
    [{ username: "has space", password: testPassword }, "username", "Enter a valid value."],
    [
      { username: "x".repeat(151), password: testPassword },
      "username",
      "Ensure this field has no more than 150 characters.",
    ],
    [{ username: 42, password: testPassword }, "username", "Not a valid string."],
    [
      { username: "weak1", password: "short" },
      "password",
      "This password is too short. It must contain at least 8 characters.",
    ],
    [
      { username: "weak2", password: "12345678901" },
      "password",
      "This password is entirely numeric.",
    ],
    [{ username: "weak3", password: "password123" }, "password", "This password is too common."],
    [
      { username: "similar", password: "similar-2024-x" },
      "password",
      "The password is too similar to the username.",
    ],
    [
      { username: "mail", password: testPassword, email: "not-an-email" },
      "email",
      "Enter a valid email address.",
    ],
    [
      { username: "extra", password: testPassword, is_superuser: true },
      "is_superuser",
      "Unknown field.",
    ],
    [{ username: "grp", password: testPassword, groups: ["Admin"] }, "groups", "Unknown field."],
  ])("refuses %j naming %s", async (payload, field, reason) => {
    const before = await snapshot(t);
    const answer = await register(payload);
    expect(answer.statusCode).toBe(400);
    expect(answer.json()[field]).toContain(reason);
    expect(await snapshot(t)).toBe(before);
  });

  it("gives one plain reason for a value that matches no branch of a union, not the schema's", async () => {
    const email = await register({ username: "mail2", password: testPassword, email: "nope" });
    expect(email.json()).toEqual({ email: ["Enter a valid email address."] });
    const admin = { authorization: (await t.userAuth(["Admin"])).authorization };
    const client = await t.inject({
      method: "POST",
      url: "/o/clients/",
      headers: admin,
      payload: {
        client_id: "union-check",
        scopes: ["read", "root", "magic", 1],
        grant_types: ["magic"],
      },
    });
    expect(client.json()).toEqual({
      "scopes.1": ["Not a valid choice."],
      "scopes.2": ["Not a valid choice."],
      "scopes.3": ["Not a valid string."],
      "grant_types.0": ["Not a valid choice."],
    });
  });

  it("stores SQL-looking input verbatim and harmlessly", async () => {
    const username = uniqueName("robert.drop--");
    const answer = await register({
      username,
      password: testPassword,
      first_name: "'; drop table app_user; --",
    });
    expect(answer.statusCode).toBe(201);
    const { rows } = await t.database.db.query<{ first_name: string }>(
      "select first_name from app_user where username = $1",
      [username],
    );
    expect(rows[0]!.first_name).toBe("'; drop table app_user; --");
  });

  it("answers malformed JSON and oversized input with 4xx", async () => {
    const malformed = await t.inject({
      method: "POST",
      url: "/register/",
      headers: { "content-type": "application/json" },
      payload: '{"username": ',
    });
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json().detail).toMatch(/^JSON parse error/);
    const huge = await register({ username: "big", password: "x".repeat(2_000_000) });
    expect(huge.statusCode).toBe(413);
    const list = await register([{ username: "a", password: testPassword }]);
    expect(list.statusCode).toBe(400);
  });
});

describe("registration limit", () => {
  it("answers 429 with Retry-After past REGISTRATIONS_PER_ADDRESS calls, whatever their outcome", async () => {
    const strict = await buildTestApp({ REGISTRATIONS_PER_ADDRESS: "2" });
    try {
      const call = (username: string) =>
        strict.inject({
          method: "POST",
          url: "/register/",
          payload: { username, password: testPassword },
        });
      const taken = uniqueName("first");
      expect((await call(taken)).statusCode).toBe(201);
      expect((await call(taken)).statusCode).toBe(400);
      const before = await snapshot(strict);
      const refused = await call(uniqueName("third"));
      expect(refused.statusCode).toBe(429);
      expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
      expect(await snapshot(strict)).toBe(before);
    } finally {
      await strict.close();
    }
  });

  it("does not limit an Admin creating accounts; a bad token is an anonymous call", async () => {
    const strict = await buildTestApp({ REGISTRATIONS_PER_ADDRESS: "1" });
    try {
      const call = (headers: Record<string, string> = {}) =>
        strict.inject({
          method: "POST",
          url: "/register/",
          headers,
          payload: { username: uniqueName("crew"), password: testPassword },
        });
      for (let i = 0; i < 4; i++) expect((await call(strict.adminAuth)).statusCode).toBe(201);
      // Anyone else from the address has the limit: one, then 429. A Manager too.
      const manager = await strict.userAuth(["Manager"]);
      expect((await call()).statusCode).toBe(201);
      expect((await call()).statusCode).toBe(429);
      expect((await call({ authorization: manager.authorization })).statusCode).toBe(429);
      // A bad or revoked token, or another scheme, is no Admin: the limit applies, as to anyone.
      for (const authorization of ["Bearer spa_not-a-token", "Basic YTpi"])
        expect((await call({ authorization })).statusCode).toBe(429);
    } finally {
      await strict.close();
    }
  });
});

describe("users administration", () => {
  it("lists users without password material, Admin only", async () => {
    const answer = await t.inject({ method: "GET", url: "/users/", headers: t.adminAuth });
    expect(answer.statusCode).toBe(200);
    expect(answer.body).not.toMatch(/argon2|password/);
    expect(answer.json()[0]).toHaveProperty("groups");
    for (const group of ["Manager", "Supervisor", "Operator"]) {
      const { authorization } = await t.userAuth([group]);
      expect(
        (await t.inject({ method: "GET", url: "/users/", headers: { authorization } })).statusCode,
      ).toBe(403);
    }
  });

  it("shows one user and 404 for unknown ids", async () => {
    const { username } = await t.userAuth(["Operator"]);
    const all = (await t.inject({ method: "GET", url: "/users/", headers: t.adminAuth })).json();
    const user = all.find((candidate: { username: string }) => candidate.username === username);
    const one = await t.inject({ method: "GET", url: `/users/${user.id}/`, headers: t.adminAuth });
    expect(one.json()).toMatchObject({ username, groups: ["Operator"], is_active: true });
    // A path naming no user is 404 however it is spelled, as under /data/.
    for (const id of ["999999", "0", "abc", "1.5", "-1", "1e3", "99999999999999999999999"]) {
      for (const method of ["GET", "PATCH", "DELETE"] as const) {
        const answer = await t.inject({
          method,
          url: `/users/${id}/`,
          headers: t.adminAuth,
          ...(method === "PATCH" ? { payload: { first_name: "x" } } : {}),
        });
        expect(answer.statusCode, `${method} ${id}`).toBe(404);
        expect(answer.json(), `${method} ${id}`).toEqual({ detail: "Not found." });
      }
    }
  });

  it("GET /users/me/ shows any signed-in user their own account and what their token may do", async () => {
    const operator = await t.userAuth(["Operator"]);
    const own = await t.inject({
      method: "GET",
      url: "/users/me/",
      headers: { authorization: operator.authorization },
    });
    expect(own.statusCode).toBe(200);
    expect(own.body).not.toMatch(/argon2|password/);
    expect(own.json()).toMatchObject({
      username: operator.username,
      groups: ["Operator"],
      is_active: true,
      scope: "read write groups ingest",
    });
    expect(own.json().permissions).toEqual(
      expect.arrayContaining(["machine.view", "toolusage.add", "toolusage.change"]),
    );
    expect(own.json().permissions).not.toContain("machine.add");
    expect(own.json().permissions).not.toContain("user.view");

    // The permissions are this token's: a read-only token of a Manager may view, not change.
    const reader = await t.userAuth(["Manager"], "read");
    const narrowed = (
      await t.inject({
        method: "GET",
        url: "/users/me/",
        headers: { authorization: reader.authorization },
      })
    ).json();
    expect(narrowed.scope).toBe("read");
    expect(narrowed.permissions).toContain("machine.view");
    expect(narrowed.permissions.some((code: string) => !code.endsWith(".view"))).toBe(false);

    // A user in no group may still read its own account: it holds no permission.
    const loner = await t.userAuth([]);
    const alone = await t.inject({
      method: "GET",
      url: "/users/me/",
      headers: { authorization: loner.authorization },
    });
    expect(alone.statusCode).toBe(200);
    expect(alone.json()).toMatchObject({ username: loner.username, groups: [], permissions: [] });

    // A client's own token has no user; no token, or a bad one, is 401; other methods change nothing.
    const clientToken = (await t.token({ grant_type: "client_credentials", scope: "read" })).json();
    const client = await t.inject({
      method: "GET",
      url: "/users/me/",
      headers: { authorization: `Bearer ${clientToken.access_token}` },
    });
    expect(client.statusCode).toBe(404);
    expect(client.json().detail).toMatch(/client/);
    expect((await t.inject({ method: "GET", url: "/users/me/" })).statusCode).toBe(401);
    expect(
      (
        await t.inject({
          method: "GET",
          url: "/users/me/",
          headers: { authorization: "Bearer not-a-token" },
        })
      ).statusCode,
    ).toBe(401);
    for (const method of ["PATCH", "DELETE"] as const) {
      const answer = await t.inject({
        method,
        url: "/users/me/",
        headers: { authorization: operator.authorization },
        ...(method === "PATCH" ? { payload: { is_active: false } } : {}),
      });
      expect(answer.statusCode, method).toBe(403);
    }
    const still = await t.inject({
      method: "GET",
      url: "/users/me/",
      headers: { authorization: operator.authorization },
    });
    expect(still.json().is_active).toBe(true);
  });

  it("deactivating a user or changing its password ends its sessions", async () => {
    const { authorization, username } = await t.userAuth(["Operator"]);
    const all = (await t.inject({ method: "GET", url: "/users/", headers: t.adminAuth })).json();
    const id = all.find((candidate: { username: string }) => candidate.username === username).id;
    const patched = await t.inject({
      method: "PATCH",
      url: `/users/${id}/`,
      headers: t.adminAuth,
      payload: { password: "A-new-Secret-77" },
    });
    expect(patched.statusCode).toBe(200);
    expect(
      (await t.inject({ method: "GET", url: "/data/machines/", headers: { authorization } }))
        .statusCode,
    ).toBe(401);
    expect(
      (await t.token({ grant_type: "password", username, password: "A-new-Secret-77" })).statusCode,
    ).toBe(200);
    await t.inject({
      method: "PATCH",
      url: `/users/${id}/`,
      headers: t.adminAuth,
      payload: { is_active: false },
    });
    expect(
      (await t.token({ grant_type: "password", username, password: "A-new-Secret-77" })).statusCode,
    ).toBe(400);
    const weak = await t.inject({
      method: "PATCH",
      url: `/users/${id}/`,
      headers: t.adminAuth,
      payload: { password: "123" },
    });
    expect(weak.statusCode).toBe(400);
    const deleted = await t.inject({
      method: "DELETE",
      url: `/users/${id}/`,
      headers: t.adminAuth,
    });
    expect(deleted.statusCode).toBe(204);
    expect(
      (await t.inject({ method: "DELETE", url: `/users/${id}/`, headers: t.adminAuth })).statusCode,
    ).toBe(404);
  });
});

describe("POST /users/me/password/", () => {
  const url = "/users/me/password/";
  const newPassword = "Lathe-Quartz-Meadow-77";
  /** A user with two sessions: the one asking for the change, and another (say, a tablet). */
  async function twoSessions() {
    const here = await t.userAuth(["Operator"]);
    const signIn = async () => {
      const answer = await t.token({
        grant_type: "password",
        username: here.username,
        password: testPassword,
      });
      expect(answer.statusCode, answer.body).toBe(200);
      return answer.json() as { access_token: string; refresh_token: string };
    };
    return { here: await signIn(), elsewhere: await signIn(), username: here.username };
  }
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const me = async (token: string) =>
    (await t.inject({ url: "/users/me/", headers: bearer(token) })).statusCode;
  const refresh = async (token: string) =>
    (await t.token({ grant_type: "refresh_token", refresh_token: token })).statusCode;
  const signsInWith = async (username: string, password: string) =>
    (await t.token({ grant_type: "password", username, password })).statusCode === 200;

  it("changes it with the old one, ends the user's other sessions and keeps this one", async () => {
    const { here, elsewhere, username } = await twoSessions();
    const answer = await t.inject({
      method: "POST",
      url,
      headers: bearer(here.access_token),
      payload: { old_password: testPassword, new_password: newPassword },
    });
    expect(answer.statusCode, answer.body).toBe(200);
    expect(answer.json()).toEqual({ message: "Password changed. Your other sessions have ended." });
    expect(await signsInWith(username, newPassword)).toBe(true);
    expect(await signsInWith(username, testPassword)).toBe(false);
    expect(await me(here.access_token)).toBe(200);
    expect(await me(elsewhere.access_token)).toBe(401);
    expect(await refresh(elsewhere.refresh_token)).toBe(400);
    // This session renews as before.
    expect(await refresh(here.refresh_token)).toBe(200);
  });

  it("refuses a wrong old password, a weak or unchanged new one, and changes nothing", async () => {
    const { here, elsewhere, username } = await twoSessions();
    const cases: [Record<string, unknown>, Record<string, string[]>][] = [
      [
        { old_password: "not-the-password", new_password: newPassword },
        { old_password: ["Your old password was entered incorrectly. Please enter it again."] },
      ],
      [
        { old_password: testPassword, new_password: testPassword },
        { new_password: ["The new password is the same as the old one."] },
      ],
      [{ old_password: testPassword, new_password: "short" }, { new_password: expect.any(Array) }],
      [{ old_password: testPassword }, { new_password: ["This field is required."] }],
      [{ new_password: newPassword }, { old_password: ["This field is required."] }],
      [
        { old_password: testPassword, new_password: "x".repeat(1025) },
        { new_password: expect.any(Array) },
      ],
      [
        { old_password: testPassword, new_password: newPassword, is_superuser: true },
        {
          is_superuser: ["Unknown field."],
        },
      ],
      [{ old_password: testPassword, new_password: 42 }, { new_password: expect.any(Array) }],
    ];
    for (const [payload, errors] of cases) {
      const before = await snapshot(t);
      const answer = await t.inject({
        method: "POST",
        url,
        headers: bearer(here.access_token),
        payload,
      });
      expect(answer.statusCode, JSON.stringify(payload)).toBe(400);
      expect(answer.json()).toEqual(errors);
      expect(await snapshot(t)).toBe(before);
    }
    const malformed = await t.inject({
      method: "POST",
      url,
      headers: { ...bearer(here.access_token), "content-type": "application/json" },
      payload: '{"old_password": ',
    });
    expect(malformed.statusCode).toBe(400);
    expect(await signsInWith(username, testPassword)).toBe(true);
    expect(await me(elsewhere.access_token)).toBe(200);
  });

  it("counts a wrong old password as a failed sign-in: too many are 429 from that address", async () => {
    const { here, username } = await twoSessions();
    const attempt = (oldPassword: string) =>
      t.inject({
        method: "POST",
        url,
        remoteAddress: "198.51.100.7",
        headers: bearer(here.access_token),
        payload: { old_password: oldPassword, new_password: newPassword },
      });
    // LOGIN_ATTEMPTS_PER_USER (10) from one address.
    for (let i = 0; i < 10; i++) expect((await attempt(`wrong-${i}`)).statusCode).toBe(400);
    const refused = await attempt(testPassword);
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    const signIn = (remoteAddress: string) =>
      t.inject({
        method: "POST",
        url: "/o/token/",
        remoteAddress,
        headers: {
          authorization: `Basic ${Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64")}`,
        },
        payload: { grant_type: "password", username, password: testPassword },
      });
    // The same count as sign-in's: that address is shut out of the account there too, another
    // address is not, and the password is unchanged.
    expect((await signIn("198.51.100.7")).statusCode).toBe(429);
    expect((await signIn("203.0.113.9")).statusCode).toBe(200);
  });

  it("needs a user's token with the write scope", async () => {
    const payload = { old_password: testPassword, new_password: newPassword };
    const readOnly = await t.userAuth(["Operator"], "read");
    const refused = await t.inject({ method: "POST", url, headers: readOnly, payload });
    expect(refused.statusCode).toBe(403);
    expect(await signsInWith(readOnly.username, testPassword)).toBe(true);
    const client = await t.token({ grant_type: "client_credentials", scope: "read write" });
    expect(client.statusCode, client.body).toBe(200);
    const clientAnswer = await t.inject({
      method: "POST",
      url,
      headers: bearer(client.json().access_token),
      payload,
    });
    expect(clientAnswer.statusCode).toBe(404);
    expect(clientAnswer.json()).toEqual({
      detail: "This token acts for an OAuth2 client, not for a user.",
    });
    expect((await t.inject({ method: "POST", url, payload })).statusCode).toBe(401);
  });
});

describe("groups and membership", () => {
  it("lists the four default groups", async () => {
    const answer = await t.inject({ method: "GET", url: "/groups/", headers: t.adminAuth });
    expect(answer.json().map((group: { name: string }) => group.name)).toEqual([
      "Admin",
      "Manager",
      "Supervisor",
      "Operator",
    ]);
  });

  it("adds and removes a user, with the seed's messages", async () => {
    const { authorization, username } = await t.userAuth([]);
    const machines = () =>
      t.inject({ method: "GET", url: "/data/machines/", headers: { authorization } });
    expect((await machines()).statusCode).toBe(403);
    const added = await t.inject({
      method: "POST",
      url: "/add-user-to-group/",
      headers: t.adminAuth,
      payload: { username, group: "Operator" },
    });
    expect(added.statusCode).toBe(200);
    expect(added.json()).toEqual({ message: `User ${username} added to group Operator` });
    expect((await machines()).statusCode).toBe(200);
    const removed = await t.inject({
      method: "POST",
      url: "/remove-user-from-group/",
      headers: t.adminAuth,
      payload: { username, group: "Operator" },
    });
    expect(removed.statusCode).toBe(200);
    expect((await machines()).statusCode).toBe(403);
  });

  it("names an unknown user or group, and changes nothing", async () => {
    const before = await snapshot(t);
    const answer = await t.inject({
      method: "POST",
      url: "/add-user-to-group/",
      headers: t.adminAuth,
      payload: { username: "ghost", group: "Wizards" },
    });
    expect(answer.statusCode).toBe(400);
    expect(answer.json()).toEqual({
      username: ['User "ghost" does not exist.'],
      group: ['Group "Wizards" does not exist.'],
    });
    const missing = await t.inject({
      method: "POST",
      url: "/add-user-to-group/",
      headers: t.adminAuth,
      payload: { username: "ghost" },
    });
    expect(missing.json()).toEqual({ group: ["This field is required."] });
    expect(await snapshot(t)).toBe(before);
  });

  it("only an Admin may change membership (the seed let anyone make anyone Admin)", async () => {
    for (const group of ["Manager", "Supervisor", "Operator"]) {
      const { authorization, username } = await t.userAuth([group]);
      const answer = await t.inject({
        method: "POST",
        url: "/add-user-to-group/",
        headers: { authorization },
        payload: { username, group: "Admin" },
      });
      expect(answer.statusCode).toBe(403);
    }
    const anonymous = await t.inject({
      method: "POST",
      url: "/add-user-to-group/",
      payload: { username: "x", group: "Admin" },
    });
    expect(anonymous.statusCode).toBe(401);
  });

  it("permissions are data: a new group and edited permissions take effect at once", async () => {
    const created = await t.inject({
      method: "POST",
      url: "/groups/",
      headers: t.adminAuth,
      payload: { name: "Auditor", permissions: ["machine.view"] },
    });
    expect(created.statusCode).toBe(201);
    const { authorization } = await t.userAuth(["Auditor"]);
    const tools = () =>
      t.inject({ method: "GET", url: "/data/tools/", headers: { authorization } });
    expect(
      (await t.inject({ method: "GET", url: "/data/machines/", headers: { authorization } }))
        .statusCode,
    ).toBe(200);
    expect((await tools()).statusCode).toBe(403);
    const edited = await t.inject({
      method: "PUT",
      url: "/groups/Auditor/permissions/",
      headers: t.adminAuth,
      payload: { permissions: ["machine.view", "tool.view"] },
    });
    expect(edited.json()).toEqual({ name: "Auditor", permissions: ["machine.view", "tool.view"] });
    expect((await tools()).statusCode).toBe(200);
    const unknown = await t.inject({
      method: "PUT",
      url: "/groups/Auditor/permissions/",
      headers: t.adminAuth,
      payload: { permissions: ["machine.fly"] },
    });
    expect(unknown.statusCode).toBe(400);
    const duplicate = await t.inject({
      method: "POST",
      url: "/groups/",
      headers: t.adminAuth,
      payload: { name: "Auditor" },
    });
    expect(duplicate.json()).toEqual({ name: ["group with this name already exists."] });
    // Names that would pass for another in a list: a letter case apart, spaces at an end, control
    // or invisible characters.
    const before = (await t.inject({ method: "GET", url: "/groups/", headers: t.adminAuth })).body;
    for (const [name, reason] of [
      ["auditor", "group with this name already exists."],
      ["ADMIN", "group with this name already exists."],
      ["Admin ", "spaces at either end"],
      [" Auditors", "spaces at either end"],
      ["   ", "spaces at either end"],
      ["Line\nbreak", "control or invisible"],
      ["Tab\there", "control or invisible"],
      ["Ad\u200bmin", "control or invisible"],
      ["Admin\u2800", "spaces at either end"],
      ["\u00a0Admin", "spaces at either end"],
    ]) {
      const refused = await t.inject({
        method: "POST",
        url: "/groups/",
        headers: t.adminAuth,
        payload: { name },
      });
      expect(refused.statusCode, JSON.stringify(name)).toBe(400);
      expect(refused.json().name[0], JSON.stringify(name)).toContain(reason);
    }
    expect((await t.inject({ method: "GET", url: "/groups/", headers: t.adminAuth })).body).toBe(
      before,
    );
    const spaced = await t.inject({
      method: "POST",
      url: "/groups/",
      headers: t.adminAuth,
      payload: { name: "Night shift – Opérateurs" },
    });
    expect(spaced.statusCode).toBe(201);
    expect(
      (await t.inject({ method: "DELETE", url: "/groups/Admin/", headers: t.adminAuth }))
        .statusCode,
    ).toBe(400);
    expect(
      (await t.inject({ method: "DELETE", url: "/groups/Auditor/", headers: t.adminAuth }))
        .statusCode,
    ).toBe(204);
    expect((await tools()).statusCode).toBe(403);
    const permissions = await t.inject({
      method: "GET",
      url: "/permissions/",
      headers: t.adminAuth,
    });
    expect(permissions.json()).toHaveLength(32);
  });
});

describe("text that is not valid Unicode", () => {
  it("is refused in a group, a user and a membership, and nothing is stored", async () => {
    const lone = "\udbff";
    for (const [url, body, field] of [
      ["/groups/", { name: `Auditors ${lone}` }, "name"],
      ["/register/", { username: `ann${lone}`, password: testPassword }, "username"],
      ["/add-user-to-group/", { username: "admin", group: `Admin${lone}` }, "group"],
    ] as const) {
      const before = await snapshot(t);
      const answer = await t.inject({
        method: "POST",
        url,
        headers: { ...t.adminAuth, "content-type": "application/json" },
        // JSON.stringify writes the lone surrogate as the escape "\udbff".
        payload: JSON.stringify(body),
      });
      expect(answer.statusCode, answer.body).toBe(400);
      expect(Object.keys(answer.json())).toEqual([field]);
      expect(await snapshot(t)).toBe(before);
    }
    // A whole pair (an emoji) is text like any other.
    const created = await t.inject({
      method: "POST",
      url: "/groups/",
      headers: t.adminAuth,
      payload: { name: "Auditors 🛠" },
    });
    expect(created.statusCode, created.body).toBe(201);
    const found = await t.inject({
      method: "GET",
      url: `/groups/${encodeURIComponent("Auditors 🛠")}/`,
      headers: t.adminAuth,
    });
    expect(found.json().name).toBe("Auditors 🛠");
  });
});

describe("the last active Admin", () => {
  it("cannot be deactivated, deleted or taken out of Admin; with another Admin it can", async () => {
    const app = await buildTestApp();
    try {
      const idOf = async (username: string, headers = app.adminAuth) =>
        (await app.inject({ method: "GET", url: "/users/", headers }))
          .json()
          .find((user: { username: string }) => user.username === username).id as number;
      const last = await app.userAuth(["Admin"]);
      const lastId = await idOf(last.username);
      // Every other Admin goes, through the same guard.
      const { rows } = await app.database.db.query<{ id: number }>(
        `select u.id from app_user u join user_group ug on ug.user_id = u.id
         join app_group g on g.id = ug.group_id and g.name = 'Admin' where u.id <> $1`,
        [lastId],
      );
      for (const { id } of rows) await app.services.users.updateUser(id, { is_active: false });
      const as = { authorization: last.authorization };
      const refusals = [
        { method: "PATCH", url: `/users/${lastId}/`, payload: { is_active: false } },
        { method: "DELETE", url: `/users/${lastId}/` },
        {
          method: "POST",
          url: "/remove-user-from-group/",
          payload: { username: last.username, group: "Admin" },
        },
      ] as const;
      for (const request of refusals) {
        const answer = await app.inject({ ...request, headers: as });
        expect(answer.statusCode, `${request.method} ${request.url}`).toBe(400);
        expect(JSON.stringify(answer.json())).toMatch(/last active Admin/);
      }
      const user = (
        await app.inject({ method: "GET", url: `/users/${lastId}/`, headers: as })
      ).json();
      expect(user).toMatchObject({ is_active: true, groups: ["Admin"] });

      // With a second Admin, the first may go, and then the second is the last.
      const second = await app.userAuth(["Admin"]);
      const deactivated = await app.inject({
        method: "PATCH",
        url: `/users/${lastId}/`,
        headers: { authorization: second.authorization },
        payload: { is_active: false },
      });
      expect(deactivated.statusCode).toBe(200);
      const alone = await app.inject({
        method: "DELETE",
        url: `/users/${await idOf(second.username, { authorization: second.authorization })}/`,
        headers: { authorization: second.authorization },
      });
      expect(alone.statusCode).toBe(400);
    } finally {
      await app.close();
    }
  });

  it.runIf(testDatabaseKind() === "postgres")(
    "of two Admins removing each other at once, one stays",
    async () => {
      const app = await buildTestApp();
      const client = new pg.Client({
        connectionString: app.database.url,
        options: `-c search_path=${app.database.schema}`,
      });
      await client.connect();
      try {
        const { rows } = await app.database.db.query<{ id: number }>(
          `select u.id from app_user u join user_group ug on ug.user_id = u.id
           join app_group g on g.id = ug.group_id and g.name = 'Admin'`,
        );
        const [a, b] = [await app.userAuth(["Admin"]), await app.userAuth(["Admin"])];
        for (const { id } of rows) await app.services.users.updateUser(id, { is_active: false });
        // Both removals start while the test holds their membership rows, so each has counted
        // two Admins before either can delete; without turns, both would then commit.
        await client.query("begin");
        await client.query("select 1 from user_group for update");
        const outcomes = Promise.allSettled(
          [a, b].map(({ username }) =>
            app.services.users.changeMembership("remove", username, "Admin"),
          ),
        );
        await new Promise((resolve) => setTimeout(resolve, 300));
        await client.query("commit");
        expect((await outcomes).map((outcome) => outcome.status).sort()).toEqual([
          "fulfilled",
          "rejected",
        ]);
        const admins = await app.database.db.query<{ n: number }>(
          `select count(*)::int as n from user_group ug join app_group g on g.id = ug.group_id
           join app_user u on u.id = ug.user_id where g.name = 'Admin' and u.is_active`,
        );
        expect(admins.rows[0]!.n).toBe(1);
      } finally {
        await client.end();
        await app.close();
      }
    },
  );
});

describe("the Admin group's permissions", () => {
  it("keep group.change, whatever else an Admin takes away", async () => {
    const put = (permissions: string[]) =>
      t.inject({
        method: "PUT",
        url: "/groups/Admin/permissions/",
        headers: t.adminAuth,
        payload: { permissions },
      });
    const before = await t.services.users.getGroup("Admin");
    for (const permissions of [[], ["user.view", "user.add", "group.view"]]) {
      const refused = await put(permissions);
      expect(refused.statusCode).toBe(400);
      expect(refused.json().permissions[0]).toMatch(/keeps group.change/);
    }
    expect(await t.services.users.getGroup("Admin")).toEqual(before);
    // Narrowed while keeping it: allowed, and it can give the rest back.
    expect((await put(["group.change", "group.view"])).statusCode).toBe(200);
    expect((await put(before.permissions)).statusCode).toBe(200);
    expect(await t.services.users.getGroup("Admin")).toEqual(before);
  });
});

describe.runIf(testDatabaseKind() === "postgres")("the Admin guard's lock", () => {
  it("lets a user be deleted while the same user is being added to Admin, without a deadlock", async () => {
    const client = new pg.Client({
      connectionString: t.database.url,
      options: `-c search_path=${t.database.schema}`,
    });
    await client.connect();
    try {
      const username = uniqueName("leaving");
      const user = await t.services.users.createUser({ username, password: testPassword }, [
        "Operator",
      ]);
      // The test holds the user's row so the deletion waits after taking the Admin group's
      // lock; meanwhile the membership's insert takes its own locks on both rows.
      await client.query("begin");
      await client.query("select 1 from app_user where id = $1 for key share", [user.id]);
      const deleting = t.services.users.deleteUser(user.id);
      await new Promise((resolve) => setTimeout(resolve, 200));
      const adding = t.services.users.changeMembership("add", username, "Admin");
      await new Promise((resolve) => setTimeout(resolve, 300));
      await client.query("commit");
      const outcomes = await Promise.allSettled([deleting, adding]);
      expect(outcomes.map((outcome) => outcome.status)).toEqual(["fulfilled", "fulfilled"]);
      const left = await t.database.db.query("select 1 from app_user where id = $1", [user.id]);
      expect(left.rows).toHaveLength(0);
    } finally {
      await client.end();
    }
  });
});

describe("concurrent edits", () => {
  it("of one group's permissions end with one of the lists, never both, never a 500", async () => {
    const name = uniqueName("busy");
    await t.services.users.createGroup(name, []);
    const lists = [
      ["machine.view", "tool.view"],
      ["machine.view", "axis.view"],
      ["tool.view", "axisdata.view"],
      ["machine.view", "tool.view", "axis.view", "axisdata.view"],
    ];
    const answers = await Promise.all(
      lists.flatMap((permissions) =>
        [1, 2].map(() =>
          t.inject({
            method: "PUT",
            url: `/groups/${name}/permissions/`,
            headers: t.adminAuth,
            payload: { permissions },
          }),
        ),
      ),
    );
    expect(answers.map((answer) => answer.statusCode)).toEqual(Array(8).fill(200));
    const final = [...(await t.services.users.getGroup(name)).permissions].sort();
    expect(lists.map((list) => [...list].sort())).toContainEqual(final);
  });
});

describe("text the database cannot store", () => {
  it("answers a NUL character in any field with 400 and changes nothing", async () => {
    const before = await snapshot(t);
    const nul = "a\u0000b";
    const requests = [
      {
        method: "POST" as const,
        url: "/register/",
        payload: { username: uniqueName("nul"), password: testPassword, first_name: nul },
      },
      {
        method: "POST" as const,
        url: "/register/",
        payload: { username: nul, password: testPassword },
      },
      {
        method: "POST" as const,
        url: "/register/",
        payload: { username: uniqueName("nul"), password: testPassword, email: `${nul}@b.co` },
      },
      { method: "POST" as const, url: "/groups/", headers: t.adminAuth, payload: { name: nul } },
      {
        method: "POST" as const,
        url: "/add-user-to-group/",
        headers: t.adminAuth,
        payload: { username: nul, group: nul },
      },
      { method: "DELETE" as const, url: "/groups/a%00b/", headers: t.adminAuth },
    ];
    for (const request of requests) {
      const answer = await t.inject(request);
      expect(answer.statusCode, JSON.stringify(request.payload ?? request.url)).toBe(400);
    }
    expect(await snapshot(t)).toEqual(before);
  });
});

describe("ADMIN_USERNAME / ADMIN_PASSWORD", () => {
  it("creates the Admin once and leaves an existing user alone", async () => {
    const username = uniqueName("boss");
    expect(await t.services.users.ensureAdmin(username, testPassword)).toBe(true);
    expect(await t.services.users.ensureAdmin(username, "Another-Password-1")).toBe(false);
    const token = await t.token({ grant_type: "password", username, password: testPassword });
    const users = await t.inject({
      method: "GET",
      url: "/users/",
      headers: { authorization: `Bearer ${token.json().access_token}` },
    });
    expect(users.statusCode).toBe(200);
  });
});
