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
import { until } from "../../../test/helpers/live-client.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ LOGIN_ATTEMPTS_PER_USER: "3", ACCESS_TOKEN_LIFETIME: "60" });
});
afterAll(() => t.close());

async function newUser(groups = ["Manager"]) {
  const username = uniqueName("oauth");
  await t.services.users.createUser({ username, password: testPassword }, groups);
  return username;
}

/** A token request with the test client, as if from `address`. */
const tokenFrom = (app: TestApp, address: string, form: Record<string, string>) =>
  app.inject({
    method: "POST",
    url: "/o/token/",
    remoteAddress: address,
    headers: {
      authorization: `Basic ${Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64")}`,
    },
    payload: form,
  });

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const machines = (token: string) =>
  t.inject({ method: "GET", url: "/data/machines/", headers: bearer(token) });

describe("POST /o/token/ password grant", () => {
  it("issues a bearer token and a refresh token, not cacheable", async () => {
    const username = await newUser();
    const answer = await t.token({ grant_type: "password", username, password: testPassword });
    expect(answer.statusCode).toBe(200);
    expect(answer.headers["cache-control"]).toBe("no-store");
    const body = answer.json();
    expect(body).toMatchObject({
      token_type: "Bearer",
      expires_in: 60,
      scope: "read write groups ingest",
    });
    expect(body.access_token).toMatch(/^spa_[\w-]{43}$/);
    expect(body.refresh_token).toMatch(/^spr_[\w-]{43}$/);
    expect((await machines(body.access_token)).statusCode).toBe(200);
  });

  it("stores only hashes of tokens", async () => {
    const username = await newUser();
    const { access_token } = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    const { rows } = await t.database.db.query<{ token_hash: Buffer }>(
      "select token_hash from oauth_token",
    );
    const stored = rows.map((row) => Buffer.from(row.token_hash).toString("hex")).join(" ");
    expect(stored).not.toContain(Buffer.from(access_token).toString("hex"));
    expect(rows.every((row) => Buffer.from(row.token_hash).length === 32)).toBe(true);
  });

  it("accepts the client in the body and JSON bodies", async () => {
    const username = await newUser();
    const answer = await t.inject({
      method: "POST",
      url: "/o/token/",
      payload: {
        grant_type: "password",
        username,
        password: testPassword,
        client_id: testClient.id,
        client_secret: testClient.secret,
      },
    });
    expect(answer.statusCode).toBe(200);
  });

  it("refuses two client authentication methods at once", async () => {
    const answer = await t.inject({
      method: "POST",
      url: "/o/token/",
      headers: {
        authorization: `Basic ${Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64")}`,
      },
      payload: { grant_type: "client_credentials", client_id: testClient.id },
    });
    expect(answer.statusCode).toBe(400);
    expect(answer.json().error).toBe("invalid_request");
  });

  it("answers RFC 6749 errors", async () => {
    const username = await newUser();
    const cases: [Record<string, string>, [string, string] | undefined, number, string][] = [
      [
        { grant_type: "password", username, password: "wrong-password" },
        undefined,
        400,
        "invalid_grant",
      ],
      [
        { grant_type: "password", username: "nobody-here", password: "x" },
        undefined,
        400,
        "invalid_grant",
      ],
      [{ grant_type: "password", username }, undefined, 400, "invalid_request"],
      [{ username, password: testPassword }, undefined, 400, "invalid_request"],
      [{ grant_type: "authorization_code", code: "x" }, undefined, 400, "unsupported_grant_type"],
      [
        { grant_type: "password", username, password: testPassword, scope: "read admin" },
        undefined,
        400,
        "invalid_scope",
      ],
      [
        { grant_type: "password", username, password: testPassword },
        [testClient.id, "wrong"],
        401,
        "invalid_client",
      ],
      [
        { grant_type: "password", username, password: testPassword },
        ["no-such-client", "x"],
        401,
        "invalid_client",
      ],
      [
        { grant_type: "refresh_token", refresh_token: "spr_not-a-token" },
        undefined,
        400,
        "invalid_grant",
      ],
      [{ grant_type: "refresh_token" }, undefined, 400, "invalid_request"],
    ];
    for (const [form, basic, status, error] of cases) {
      const answer = await t.token(form, basic);
      expect({ form, status: answer.statusCode, error: answer.json().error }).toEqual({
        form,
        status,
        error,
      });
    }
    // A scope both unknown and not the client's is named once.
    const scoped = await t.token({ grant_type: "client_credentials", scope: "read admin" });
    expect(scoped.json().error_description).toBe("Scope not allowed: admin.");
  });

  it("refuses a token request without any client", async () => {
    const answer = await t.inject({
      method: "POST",
      url: "/o/token/",
      payload: { grant_type: "client_credentials" },
    });
    expect(answer.statusCode).toBe(401);
    expect(answer.json().error).toBe("invalid_client");
  });

  it("answers malformed and hostile bodies with invalid_request, never 500", async () => {
    const bodies = [
      {
        payload: "grant_type=password&username=a&username=b&password=x",
        type: "application/x-www-form-urlencoded",
      },
      { payload: JSON.stringify({ grant_type: 42 }), type: "application/json" },
      {
        payload: JSON.stringify({
          grant_type: "password",
          username: "x".repeat(5000),
          password: "y",
        }),
        type: "application/json",
      },
      { payload: "{not json", type: "application/json" },
      {
        payload: JSON.stringify({
          grant_type: "password",
          username: "' or 1=1 --",
          password: "' or ''='",
        }),
        type: "application/json",
      },
    ];
    for (const { payload, type } of bodies) {
      const answer = await t.inject({
        method: "POST",
        url: "/o/token/",
        headers: {
          "content-type": type,
          authorization: `Basic ${Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64")}`,
        },
        payload,
      });
      expect(answer.statusCode, payload.slice(0, 60)).toBe(400);
    }
  });

  it("refuses an inactive user", async () => {
    const username = await newUser();
    const { rows } = await t.database.db.query<{ id: number }>(
      "select id from app_user where username = $1",
      [username],
    );
    await t.services.users.updateUser(rows[0]!.id, { is_active: false });
    const answer = await t.token({ grant_type: "password", username, password: testPassword });
    expect(answer.json().error).toBe("invalid_grant");
  });
});

describe("text the database cannot store", () => {
  it("answers a NUL character in a client id or username with RFC 6749's 400", async () => {
    const answers = [
      await t.inject({
        method: "POST",
        url: "/o/token/",
        payload: { grant_type: "password", client_id: "a\u0000b", username: "x", password: "y" },
      }),
      await t.token({ grant_type: "password", username: "a\u0000b", password: testPassword }),
    ];
    for (const answer of answers) {
      expect(answer.statusCode).toBe(400);
      expect(answer.json()).toEqual({
        error: "invalid_request",
        error_description: expect.any(String),
      });
    }
  });

  it("answers malformed JSON in RFC 6749's shape", async () => {
    const answer = await t.inject({
      method: "POST",
      url: "/o/token/",
      headers: { "content-type": "application/json" },
      payload: "{not json",
    });
    expect(answer.statusCode).toBe(400);
    expect(answer.json()).toEqual({
      error: "invalid_request",
      error_description: expect.any(String),
    });
  });
});

describe("login rate limit", () => {
  it("answers 429 after too many failures for one username, even with the right password", async () => {
    const username = await newUser();
    for (let i = 0; i < 3; i++) {
      expect(
        (await t.token({ grant_type: "password", username, password: "wrong" })).statusCode,
      ).toBe(400);
    }
    const blocked = await t.token({ grant_type: "password", username, password: testPassword });
    expect(blocked.statusCode).toBe(429);
    expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
    // Other users are not affected.
    const other = await newUser();
    expect(
      (await t.token({ grant_type: "password", username: other, password: testPassword }))
        .statusCode,
    ).toBe(200);
  });

  it("shuts the guessing address out of the username, not the username's owner elsewhere", async () => {
    const username = await newUser();
    const attacker = "203.0.113.7";
    // Far past the limit: once refused, an address's attempts count against no one.
    for (let i = 0; i < 20; i++)
      await tokenFrom(t, attacker, { grant_type: "password", username, password: "wrong" });
    const owner = await tokenFrom(t, "198.51.100.20", {
      grant_type: "password",
      username,
      password: testPassword,
    });
    expect(owner.statusCode).toBe(200);
    const refused = await tokenFrom(t, attacker, {
      grant_type: "password",
      username,
      password: testPassword,
    });
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
  });

  it("bounds failures for one username across addresses", async () => {
    const strict = await buildTestApp({
      LOGIN_ATTEMPTS_PER_USER: "2",
      LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES: "6",
    });
    try {
      const username = uniqueName("spread");
      await strict.services.users.createUser({ username, password: testPassword });
      const attempt = (address: string, password: string) =>
        tokenFrom(strict, address, { grant_type: "password", username, password });
      const guessers = ["203.0.113.1", "203.0.113.2", "203.0.113.3"];
      for (const address of guessers)
        for (let i = 0; i < 2; i++) expect((await attempt(address, "wrong")).statusCode).toBe(400);
      // Six failures: no address has run out its own allowance for the username, yet the
      // username is closed to every address for the rest of the window.
      const owner = await attempt("198.51.100.20", testPassword);
      expect(owner.statusCode).toBe(429);
      expect(Number(owner.headers["retry-after"])).toBeGreaterThan(0);
      const other = uniqueName("bystander");
      await strict.services.users.createUser({ username: other, password: testPassword });
      expect(
        (
          await tokenFrom(strict, "203.0.113.1", {
            grant_type: "password",
            username: other,
            password: testPassword,
          })
        ).statusCode,
      ).toBe(200);
    } finally {
      await strict.close();
    }
  });

  it("lets one failure short of the bound across addresses through", async () => {
    const strict = await buildTestApp({
      LOGIN_ATTEMPTS_PER_USER: "2",
      LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES: "6",
    });
    try {
      const username = uniqueName("spread");
      await strict.services.users.createUser({ username, password: testPassword });
      const attempt = (address: string, password: string) =>
        tokenFrom(strict, address, { grant_type: "password", username, password });
      for (const address of ["203.0.113.1", "203.0.113.2"])
        for (let i = 0; i < 2; i++) expect((await attempt(address, "wrong")).statusCode).toBe(400);
      expect((await attempt("203.0.113.3", "wrong")).statusCode).toBe(400);
      // Five failures: the owner signs in, and takes back only the attempt that was right.
      expect((await attempt("198.51.100.20", testPassword)).statusCode).toBe(200);
      expect((await attempt("203.0.113.3", "wrong")).statusCode).toBe(400);
      expect((await attempt("198.51.100.20", testPassword)).statusCode).toBe(429);
    } finally {
      await strict.close();
    }
  });

  it("counts a username's spellings the database takes for it as one (a dotted capital İ)", async () => {
    const username = uniqueName("admin");
    await t.services.users.createUser({ username, password: testPassword });
    const dotted = username.replace("i", "İ");
    // JavaScript lowers "İ" to "i̇", two characters; the lookup's lower() may make it "i".
    expect(dotted.toLowerCase()).not.toBe(username);
    const { rows } = await t.database.db.query<{ same: boolean }>(
      "select lower($1::text) = lower($2::text) as same",
      [dotted, username],
    );
    const same = rows[0]!.same;
    if (testDatabaseKind() === "postgres") expect(same).toBe(true);
    for (let i = 0; i < 3; i++)
      expect(
        (await t.token({ grant_type: "password", username, password: "wrong" })).statusCode,
      ).toBe(400);
    const guess = await t.token({ grant_type: "password", username: dotted, password: "wrong" });
    const right = await t.token({
      grant_type: "password",
      username: dotted,
      password: testPassword,
    });
    // Where the database tells the spellings apart, the dotted one names no user at all.
    expect([guess.statusCode, right.statusCode]).toEqual(same ? [429, 429] : [400, 400]);
  });

  it("counts parallel guesses before checking them: no more pass than the limit", async () => {
    const username = await newUser();
    const answers = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        t.token({ grant_type: "password", username, password: `wrong-${i}` }),
      ),
    );
    const codes = answers.map((answer) => answer.statusCode);
    expect(codes.filter((code) => code === 400)).toHaveLength(3);
    expect(codes.filter((code) => code === 429)).toHaveLength(9);
  });

  it("gives a right password's attempt back to the address", async () => {
    const strict = await buildTestApp({
      LOGIN_ATTEMPTS_PER_ADDRESS: "2",
      LOGIN_ATTEMPTS_PER_USER: "100",
    });
    try {
      const username = uniqueName("regular");
      await strict.services.users.createUser({ username, password: testPassword });
      for (let i = 0; i < 5; i++)
        expect(
          (await strict.token({ grant_type: "password", username, password: testPassword }))
            .statusCode,
        ).toBe(200);
      expect(
        (await strict.token({ grant_type: "password", username, password: "wrong" })).statusCode,
      ).toBe(400);
    } finally {
      await strict.close();
    }
  });

  it("counts an IPv6 /64 as one address, and an IPv4 address written as IPv6 as that address", async () => {
    const strict = await buildTestApp({
      LOGIN_ATTEMPTS_PER_ADDRESS: "3",
      LOGIN_ATTEMPTS_PER_USER: "100",
    });
    try {
      const username = uniqueName("host");
      await strict.services.users.createUser({ username, password: testPassword });
      // One host taking a new address of its /64 for each guess.
      for (const [i, address] of [
        "2001:db8:5:6::1",
        "2001:db8:5:6::2",
        "2001:db8:5:6:ffff:ffff:ffff:ffff",
      ].entries()) {
        const guess = await tokenFrom(strict, address, {
          grant_type: "password",
          username: `guess-${i}`,
          password: "wrong",
        });
        expect(guess.statusCode).toBe(400);
      }
      const right = { grant_type: "password", username, password: testPassword };
      expect((await tokenFrom(strict, "2001:db8:5:6::9", right)).statusCode).toBe(429);
      expect((await tokenFrom(strict, "2001:db8:5:7::1", right)).statusCode).toBe(200);
      for (let i = 0; i < 3; i++)
        await tokenFrom(strict, "::ffff:198.51.100.20", { ...right, password: "wrong" });
      expect((await tokenFrom(strict, "198.51.100.20", right)).statusCode).toBe(429);
    } finally {
      await strict.close();
    }
  });

  it("limits failures per client address across usernames", async () => {
    const strict = await buildTestApp({
      LOGIN_ATTEMPTS_PER_ADDRESS: "4",
      LOGIN_ATTEMPTS_PER_USER: "100",
    });
    try {
      for (let i = 0; i < 4; i++) {
        await strict.token({ grant_type: "password", username: `guess${i}`, password: "wrong" });
      }
      const username = uniqueName("victim");
      await strict.services.users.createUser({ username, password: testPassword });
      expect(
        (await strict.token({ grant_type: "password", username, password: testPassword }))
          .statusCode,
      ).toBe(429);
    } finally {
      await strict.close();
    }
  });
});

describe("the client's address behind a proxy (TRUST_PROXY)", () => {
  /** A password sign-in arriving from `peer` that says, in X-Forwarded-For, it is `forwarded`'s. */
  const signIn = (app: TestApp, peer: string, forwarded: string, form: Record<string, string>) =>
    app.app.inject({
      method: "POST",
      url: "/o/token/",
      remoteAddress: peer,
      headers: {
        authorization: `Basic ${Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64")}`,
        "x-forwarded-for": forwarded,
      },
      payload: { grant_type: "password", ...form },
    });

  it("counts each forwarded address apart when the proxy is trusted", async () => {
    const proxied = await buildTestApp({
      TRUST_PROXY: "10.0.0.0/8",
      LOGIN_ATTEMPTS_PER_USER: "2",
      LOGIN_ATTEMPTS_PER_ADDRESS: "2",
    });
    try {
      const username = uniqueName("proxied");
      await proxied.services.users.createUser({ username, password: testPassword });
      const proxy = "10.1.2.3";
      for (let i = 0; i < 2; i++)
        expect(
          (await signIn(proxied, proxy, "203.0.113.7", { username, password: "wrong" })).statusCode,
        ).toBe(400);
      expect(
        (await signIn(proxied, proxy, "203.0.113.7", { username, password: testPassword }))
          .statusCode,
      ).toBe(429);
      // The same proxy, another client behind it: neither the username nor the address is spent.
      expect(
        (await signIn(proxied, proxy, "198.51.100.20", { username, password: testPassword }))
          .statusCode,
      ).toBe(200);
      // A peer that is not the proxy is its own address, whatever it forwards.
      const stranger = "203.0.113.9";
      for (const forwarded of ["192.0.2.1", "192.0.2.2"])
        expect(
          (await signIn(proxied, stranger, forwarded, { username, password: "wrong" })).statusCode,
        ).toBe(400);
      expect(
        (await signIn(proxied, stranger, "192.0.2.3", { username, password: testPassword }))
          .statusCode,
      ).toBe(429);
    } finally {
      await proxied.close();
    }
  });

  it("ignores X-Forwarded-For when no proxy is trusted", async () => {
    const username = await newUser();
    for (const forwarded of ["203.0.113.1", "203.0.113.2", "203.0.113.3"])
      expect(
        (await signIn(t, "10.1.2.3", forwarded, { username, password: "wrong" })).statusCode,
      ).toBe(400);
    expect(
      (await signIn(t, "10.1.2.3", "198.51.100.20", { username, password: testPassword }))
        .statusCode,
    ).toBe(429);
  });
});

describe("client authentication rate limit", () => {
  it("limits failed client secrets per address on every endpoint that checks one", async () => {
    const strict = await buildTestApp({
      LOGIN_ATTEMPTS_PER_ADDRESS: "4",
      LOGIN_ATTEMPTS_PER_USER: "100",
    });
    try {
      const wrong = {
        authorization: `Basic ${Buffer.from(`${testClient.id}:wrong`).toString("base64")}`,
      };
      const failures = [
        await strict.token({ grant_type: "client_credentials" }, [testClient.id, "wrong"]),
        await strict.token({ grant_type: "client_credentials" }, ["no-such-client", "x"]),
        await strict.inject({
          method: "POST",
          url: "/o/revoke_token/",
          headers: wrong,
          payload: { token: "x" },
        }),
        await strict.inject({
          method: "POST",
          url: "/o/introspect/",
          headers: wrong,
          payload: { token: "x" },
        }),
      ];
      expect(failures.map((answer) => answer.statusCode)).toEqual([401, 401, 401, 401]);
      // The right secret is refused too now, on each endpoint.
      const blocked = await strict.token({ grant_type: "client_credentials" });
      expect(blocked.statusCode).toBe(429);
      expect(blocked.json().error).toBe("too_many_requests");
      expect(Number(blocked.headers["retry-after"])).toBeGreaterThan(0);
      const right = {
        authorization: `Basic ${Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64")}`,
      };
      for (const url of ["/o/revoke_token/", "/o/introspect/"])
        expect(
          (await strict.inject({ method: "POST", url, headers: right, payload: { token: "x" } }))
            .statusCode,
          url,
        ).toBe(429);
      // People behind the address are not locked out by a client's failures: theirs count apart.
      await strict.services.oauth.createClient({ clientId: "tab", public: true });
      const username = uniqueName("behind");
      await strict.services.users.createUser({ username, password: testPassword });
      expect(
        (
          await strict.inject({
            method: "POST",
            url: "/o/token/",
            payload: { grant_type: "password", username, password: testPassword, client_id: "tab" },
          })
        ).statusCode,
      ).toBe(200);
    } finally {
      await strict.close();
    }
  });

  it("shuts a client out of the address that failed its secret, not out of others", async () => {
    const strict = await buildTestApp({ LOGIN_ATTEMPTS_PER_USER: "2" });
    try {
      const basic = (clientId: string, secret: string) => ({
        authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString("base64")}`,
      });
      const credentials = (address: string, headers: { authorization: string }) =>
        strict.inject({
          method: "POST",
          url: "/o/token/",
          remoteAddress: address,
          headers,
          payload: { grant_type: "client_credentials" },
        });
      const attacker = "203.0.113.7";
      for (let i = 0; i < 2; i++)
        expect((await credentials(attacker, basic(testClient.id, "wrong"))).statusCode).toBe(401);
      const refused = await credentials(attacker, basic(testClient.id, testClient.secret));
      expect(refused.statusCode).toBe(429);
      expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
      // The adapter, at its own address, still gets its tokens …
      expect(
        (await credentials("198.51.100.20", basic(testClient.id, testClient.secret))).statusCode,
      ).toBe(200);
      // … and so does another client at the attacker's address.
      const other = { id: "other-adapter", secret: "other-adapter-secret-0123" };
      await strict.services.oauth.createClient({
        clientId: other.id,
        secret: other.secret,
        grantTypes: ["client_credentials"],
        scopes: ["ingest"],
      });
      expect((await credentials(attacker, basic(other.id, other.secret))).statusCode).toBe(200);
    } finally {
      await strict.close();
    }
  });

  it("counts only failures: right secrets sent at once all pass, however many", async () => {
    const strict = await buildTestApp({ LOGIN_ATTEMPTS_PER_ADDRESS: "3" });
    try {
      const answers = await Promise.all(
        Array.from({ length: 8 }, () => strict.token({ grant_type: "client_credentials" })),
      );
      expect(answers.map((answer) => answer.statusCode)).toEqual(Array(8).fill(200));
      await strict.services.oauth.createClient({ clientId: "tab", public: true });
      const username = uniqueName("tab");
      await strict.services.users.createUser({ username, password: testPassword });
      for (let i = 0; i < 5; i++)
        expect(
          (
            await strict.inject({
              method: "POST",
              url: "/o/token/",
              payload: {
                grant_type: "password",
                username,
                password: testPassword,
                client_id: "tab",
              },
            })
          ).statusCode,
        ).toBe(200);
    } finally {
      await strict.close();
    }
  });
});

describe("refresh_token grant", () => {
  it("rotates: the new pair works, the used refresh token and the old access token stop", async () => {
    const username = await newUser();
    const first = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    const second = await t.token({
      grant_type: "refresh_token",
      refresh_token: first.refresh_token,
    });
    expect(second.statusCode).toBe(200);
    const pair = second.json();
    expect(pair.refresh_token).not.toBe(first.refresh_token);
    expect((await machines(pair.access_token)).statusCode).toBe(200);
    expect((await machines(first.access_token)).statusCode).toBe(401);
    const reused = await t.token({
      grant_type: "refresh_token",
      refresh_token: first.refresh_token,
    });
    expect(reused.json().error).toBe("invalid_grant");
    // Reuse means the token leaked: the whole family, including the new pair, is revoked.
    expect((await machines(pair.access_token)).statusCode).toBe(401);
    expect(
      (await t.token({ grant_type: "refresh_token", refresh_token: pair.refresh_token }))
        .statusCode,
    ).toBe(400);
  });

  it("may narrow the scope but not widen it", async () => {
    const username = await newUser();
    const first = (
      await t.token({ grant_type: "password", username, password: testPassword, scope: "read" })
    ).json();
    const wider = await t.token({
      grant_type: "refresh_token",
      refresh_token: first.refresh_token,
      scope: "read write",
    });
    expect(wider.json().error).toBe("invalid_scope");
  });

  it("belongs to the client it was issued to", async () => {
    await t.services.oauth.createClient({
      clientId: "other-client",
      secret: "other-client-secret-123456",
    });
    const username = await newUser();
    const first = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    const stolen = await t.token(
      { grant_type: "refresh_token", refresh_token: first.refresh_token },
      ["other-client", "other-client-secret-123456"],
    );
    expect(stolen.json().error).toBe("invalid_grant");
  });
});

describe("HTTP Basic client authentication", () => {
  it("takes the scheme's name in any letter case (RFC 7235)", async () => {
    const credentials = Buffer.from(`${testClient.id}:${testClient.secret}`).toString("base64");
    for (const scheme of ["Basic", "basic", "BASIC"]) {
      const answer = await t.inject({
        method: "POST",
        url: "/o/token/",
        headers: { authorization: `${scheme} ${credentials}` },
        payload: { grant_type: "client_credentials" },
      });
      expect(answer.statusCode, scheme).toBe(200);
    }
    const wrong = await t.inject({
      method: "POST",
      url: "/o/token/",
      headers: { authorization: `basic ${Buffer.from(`${testClient.id}:x`).toString("base64")}` },
      payload: { grant_type: "client_credentials" },
    });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers["www-authenticate"]).toBe('Basic realm="oauth"');
  });
});

describe("the Authorization header", () => {
  it.each([
    ["another scheme", "Token spa_abc"],
    ["Basic credentials", `Basic ${Buffer.from("a:b").toString("base64")}`],
    ["no token", "Bearer"],
    ["two tokens", "Bearer spa_a spa_b"],
    ["an unknown token", "Bearer spa_not-a-token"],
    ["an oversized token", `Bearer ${"x".repeat(4000)}`],
  ])("answers 401 Invalid token. for %s, asking for a Bearer token", async (_, authorization) => {
    const answer = await t.inject({
      method: "GET",
      url: "/data/machines/",
      headers: { authorization },
    });
    expect(answer.statusCode).toBe(401);
    expect(answer.json()).toEqual({ detail: "Invalid token." });
    expect(answer.headers["www-authenticate"]).toBe('Bearer realm="api"');
  });
});

describe("token expiry", () => {
  it("an access token stops working when its lifetime passes", async () => {
    const username = await newUser();
    const { access_token } = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    expect((await machines(access_token)).statusCode).toBe(200);
    t.clock.advance(61_000);
    const expired = await machines(access_token);
    expect(expired.statusCode).toBe(401);
    expect(expired.json()).toEqual({ detail: "Invalid token." });
  });
});

describe("client_credentials grant", () => {
  it("gives a machine adapter a token without a refresh token, scoped to what it asked", async () => {
    const answer = await t.token({ grant_type: "client_credentials", scope: "ingest read" });
    expect(answer.statusCode).toBe(200);
    const body = answer.json();
    expect(body.refresh_token).toBeUndefined();
    expect(body.scope).toBe("ingest read");
    expect((await machines(body.access_token)).statusCode).toBe(200);
    // No user behind it: it cannot administer anything.
    expect(
      (await t.inject({ method: "GET", url: "/users/", headers: bearer(body.access_token) }))
        .statusCode,
    ).toBe(403);
  });

  it("is refused to a client not registered for it, and to public clients", async () => {
    await t.services.oauth.createClient({
      clientId: "pw-only",
      secret: "pw-only-secret-1234567890",
    });
    const denied = await t.token({ grant_type: "client_credentials" }, [
      "pw-only",
      "pw-only-secret-1234567890",
    ]);
    expect(denied.json().error).toBe("unauthorized_client");
    const publicWithCredentials = {
      clientId: "browser",
      public: true,
      grantTypes: ["password" as const, "client_credentials" as const],
    };
    await expect(t.services.oauth.createClient(publicWithCredentials)).rejects.toMatchObject({
      fields: { grant_types: [expect.stringContaining("public client")] },
    });
    // One stored all the same (by SQL, or before the rule): the token endpoint refuses it too.
    await t.database.db.query(
      `insert into oauth_client (client_id, secret_hash, name, grant_types, scopes)
       values ('browser', null, '', $1, $2)`,
      [publicWithCredentials.grantTypes, ["read"]],
    );
    const publicClient = await t.inject({
      method: "POST",
      url: "/o/token/",
      payload: { grant_type: "client_credentials", client_id: "browser" },
    });
    expect(publicClient.json().error).toBe("unauthorized_client");
  });
});

describe("POST /o/revoke_token/", () => {
  it("revokes an access token at once", async () => {
    const username = await newUser();
    const { access_token } = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    const answer = await t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: { token: access_token, client_id: testClient.id, client_secret: testClient.secret },
    });
    expect(answer.statusCode).toBe(200);
    expect((await machines(access_token)).statusCode).toBe(401);
  });

  it("revoking a refresh token ends the access tokens issued with it", async () => {
    const username = await newUser();
    const pair = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    await t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: {
        token: pair.refresh_token,
        client_id: testClient.id,
        client_secret: testClient.secret,
      },
    });
    expect((await machines(pair.access_token)).statusCode).toBe(401);
    expect(
      (await t.token({ grant_type: "refresh_token", refresh_token: pair.refresh_token }))
        .statusCode,
    ).toBe(400);
  });

  it("answers 200 for unknown tokens, needs client authentication, and cannot revoke another client's token", async () => {
    const unknown = await t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: { token: "spa_unknown", client_id: testClient.id, client_secret: testClient.secret },
    });
    expect(unknown.statusCode).toBe(200);
    const anonymous = await t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: { token: "x" },
    });
    expect(anonymous.statusCode).toBe(401);
    await t.services.oauth.createClient({ clientId: "rival", secret: "rival-secret-12345678901" });
    const username = await newUser();
    const { access_token } = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    await t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: {
        token: access_token,
        client_id: "rival",
        client_secret: "rival-secret-12345678901",
      },
    });
    expect((await machines(access_token)).statusCode).toBe(200);
  });
});

describe("POST /o/introspect/", () => {
  it("describes an active token and says inactive for revoked or unknown ones", async () => {
    const username = await newUser();
    const { access_token } = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    const client = { client_id: testClient.id, client_secret: testClient.secret };
    const active = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      payload: { token: access_token, ...client },
    });
    expect(active.statusCode).toBe(200);
    expect(active.json()).toMatchObject({
      active: true,
      username,
      client_id: testClient.id,
      token_type: "Bearer",
    });
    const unknown = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      payload: { token: "nope", ...client },
    });
    expect(unknown.json()).toEqual({ active: false });
    // A Bearer token also authorizes the call.
    const byBearer = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      headers: bearer(access_token),
      payload: { token: access_token },
    });
    expect(byBearer.json().active).toBe(true);
    // Another person's token: inactive to a token holder, as if unknown; an Admin sees it.
    const other = await newUser();
    const { refresh_token } = (
      await t.token({ grant_type: "password", username: other, password: testPassword })
    ).json();
    const probed = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      headers: bearer(access_token),
      payload: { token: refresh_token },
    });
    expect(probed.json()).toEqual({ active: false });
    const byAdmin = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      headers: { authorization: (await t.userAuth(["Admin"])).authorization },
      payload: { token: refresh_token },
    });
    expect(byAdmin.json()).toMatchObject({ active: true, username: other });
  });

  it("refuses callers that are neither a client nor a token holder", async () => {
    const answer = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      payload: { token: "x" },
    });
    expect(answer.statusCode).toBe(401);
  });

  it("refuses a public client, which proves nothing by naming itself", async () => {
    await t.services.oauth.createClient({ clientId: "a-browser", public: true });
    const username = await newUser();
    const token = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json().access_token;
    const answer = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      payload: { token, client_id: "a-browser" },
    });
    expect(answer.statusCode).toBe(401);
    expect(answer.json()).toMatchObject({ error: "invalid_client" });
    expect(answer.body).not.toContain(username);
  });
});

describe("Bearer authentication", () => {
  it("answers 401 with DRF's messages", async () => {
    const missing = await t.inject({ method: "GET", url: "/data/machines/" });
    expect(missing.statusCode).toBe(401);
    expect(missing.json()).toEqual({ detail: "Authentication credentials were not provided." });
    expect(missing.headers["www-authenticate"]).toContain("Bearer");
    for (const authorization of [
      "Bearer spa_forged",
      "Bearer ' or 1=1 --",
      "Token abc",
      "Bearer",
      `Bearer ${"a".repeat(5000)}`,
    ]) {
      const answer = await t.inject({
        method: "GET",
        url: "/data/machines/",
        headers: { authorization },
      });
      expect(answer.statusCode, authorization.slice(0, 30)).toBe(401);
    }
  });

  it("a token without the write scope cannot change data even for a Manager", async () => {
    const reader = await t.userAuth(["Manager"], "read");
    const list = await t.inject({
      method: "GET",
      url: "/data/machines/",
      headers: { authorization: reader.authorization },
    });
    expect(list.statusCode).toBe(200);
    const write = await t.inject({
      method: "POST",
      url: "/data/machines/",
      headers: { authorization: reader.authorization },
      payload: { machine_id: 5, machine_name: "nope", tool_capacity: 1 },
    });
    expect(write.statusCode).toBe(403);
  });
});

describe("OAuth2 client administration", () => {
  it("lets an Admin register, list and delete clients; a generated secret is shown once", async () => {
    // A fresh sign-in: the expiry test above moved the clock past older tokens' lifetime.
    const admin = { authorization: (await t.userAuth(["Admin"])).authorization };
    const created = await t.inject({
      method: "POST",
      url: "/o/clients/",
      headers: admin,
      payload: { client_id: "adapter-7", grant_types: ["client_credentials"], scopes: ["ingest"] },
    });
    expect(created.statusCode).toBe(201);
    const { client_secret } = created.json();
    expect(client_secret).toMatch(/^sps_/);
    expect(
      (await t.token({ grant_type: "client_credentials" }, ["adapter-7", client_secret]))
        .statusCode,
    ).toBe(200);
    const listed = await t.inject({ method: "GET", url: "/o/clients/", headers: admin });
    expect(JSON.stringify(listed.json())).not.toContain(client_secret);
    const duplicate = await t.inject({
      method: "POST",
      url: "/o/clients/",
      headers: admin,
      payload: { client_id: "adapter-7" },
    });
    expect(duplicate.statusCode).toBe(400);
    expect(duplicate.json()).toHaveProperty("client_id");
    expect(
      (await t.inject({ method: "DELETE", url: "/o/clients/adapter-7/", headers: admin }))
        .statusCode,
    ).toBe(204);
    expect(
      (await t.inject({ method: "DELETE", url: "/o/clients/adapter-7/", headers: admin }))
        .statusCode,
    ).toBe(404);
  });

  it("refuses the console's id, which the server registers, and a client with no scope", async () => {
    const admin = { authorization: (await t.userAuth(["Admin"])).authorization };
    const register = (payload: object) =>
      t.inject({ method: "POST", url: "/o/clients/", headers: admin, payload });
    const reserved = await register({
      client_id: "spindle-console",
      client_secret: "s".repeat(20),
    });
    expect(reserved.statusCode).toBe(400);
    expect(reserved.json()).toEqual({
      client_id: ["Reserved: the server registers this client itself."],
    });
    const scopeless = await register({ client_id: "mute", scopes: [] });
    expect(scopeless.statusCode).toBe(400);
    expect(scopeless.json()).toEqual({ scope: ["At least one scope, each once."] });
    const listed = await t.inject({ method: "GET", url: "/o/clients/", headers: admin });
    expect(JSON.stringify(listed.json())).not.toContain('"mute"');
  });

  it("is Admin only", async () => {
    for (const group of ["Manager", "Supervisor", "Operator"]) {
      const { authorization } = await t.userAuth([group]);
      expect(
        (await t.inject({ method: "GET", url: "/o/clients/", headers: { authorization } }))
          .statusCode,
      ).toBe(403);
    }
  });
});

describe("expired token purge", () => {
  it("deletes tokens a day past their expiry and keeps the rest", async () => {
    const username = await newUser();
    const { access_token } = (
      await t.token({ grant_type: "password", username, password: testPassword })
    ).json();
    const count = async () =>
      Number(
        (await t.database.db.query<{ n: number }>("select count(*)::int as n from oauth_token"))
          .rows[0]!.n,
      );
    const before = await count();
    expect(await t.services.oauth.purgeExpiredTokens()).toBe(0);
    expect(await count()).toBe(before);
    // Two weeks and a day later, every access token issued so far (lifetime 60 s) is purgeable,
    // and refresh tokens (14 days) too.
    t.clock.advance(15 * 86_400_000 + 120_000);
    expect(await t.services.oauth.purgeExpiredTokens()).toBe(before);
    expect((await machines(access_token)).statusCode).toBe(401);
  });
});

describe.runIf(testDatabaseKind() === "postgres")(
  "a password reset racing a sign-in or a refresh",
  () => {
    /**
     * Runs `work` while a reset of `username`'s password is under way in a transaction of the
     * test's own (the row changed, then, 300 ms later, every token revoked and committed), and
     * gives `work`'s answer and how many of the user's tokens are still good afterwards.
     */
    async function duringReset(username: string, work: () => Promise<{ statusCode: number }>) {
      const client = new pg.Client({
        connectionString: t.database.url,
        options: `-c search_path=${t.database.schema}`,
      });
      await client.connect();
      try {
        const { rows } = await client.query<{ id: number }>(
          "select id from app_user where username = $1",
          [username],
        );
        const id = rows[0]!.id;
        await client.query("begin");
        await client.query("update app_user set password_hash = 'reset' where id = $1", [id]);
        const answer = work();
        await new Promise((resolve) => setTimeout(resolve, 300));
        await client.query(
          "update oauth_token set revoked_at = now() where user_id = $1 and revoked_at is null",
          [id],
        );
        await client.query("commit");
        const { statusCode } = await answer;
        const live = await client.query<{ n: number }>(
          "select count(*)::int as n from oauth_token where user_id = $1 and revoked_at is null",
          [id],
        );
        return { statusCode, live: live.rows[0]!.n };
      } finally {
        await client.end();
      }
    }

    it("a sign-in with the old password gets no tokens", async () => {
      const username = await newUser();
      const outcome = await duringReset(username, () =>
        t.token({ grant_type: "password", username, password: testPassword }),
      );
      expect(outcome).toEqual({ statusCode: 400, live: 0 });
    });

    it("a refresh gets no tokens", async () => {
      const username = await newUser();
      const signedIn = await t.token({ grant_type: "password", username, password: testPassword });
      const refresh_token = signedIn.json().refresh_token as string;
      const outcome = await duringReset(username, () =>
        t.token({ grant_type: "refresh_token", refresh_token }),
      );
      expect(outcome).toEqual({ statusCode: 400, live: 0 });
    });
  },
);

describe("what announces a change to tokens and users", () => {
  // Each announcement empties every server's token cache and rechecks every live socket's
  // token, so only what changes a principal may make one; anyone can send made-up tokens.
  it("a made-up refresh or revocation, a sign-in and the purge announce nothing; an account change and a rotation do", async () => {
    const heard: string[] = [];
    const stop = t.services.changes.onChange((table) => heard.push(table));
    try {
      const username = await newUser();
      const signIn = await t.token({ grant_type: "password", username, password: testPassword });
      expect(signIn.statusCode).toBe(200);
      const madeUp = await t.token({ grant_type: "refresh_token", refresh_token: "spr_made_up" });
      expect(madeUp.json().error).toBe("invalid_grant");
      const unknown = await t.inject({
        method: "POST",
        url: "/o/revoke_token/",
        payload: {
          token: "spa_unknown",
          client_id: testClient.id,
          client_secret: testClient.secret,
        },
      });
      expect(unknown.statusCode).toBe(200);
      // Changes written straight to the database are heard through their triggers, in commit
      // order: once the last is heard, whatever the sign-in's last_login raised has been too.
      await t.database.db.query(
        "update app_user set is_active = true where lower(username) = lower($1)",
        [username],
      );
      // The hourly purge of expired tokens changes no principal either.
      await t.services.oauth.purgeExpiredTokens();
      await t.database.db.query("update oauth_client set name = name where false");
      await until(() => heard.includes("oauth_client"));
      // (The new user's group membership may still be heard: it was announced before.)
      const tokensAndUsers = () =>
        heard.filter((table) => table === "app_user" || table === "oauth_token");
      expect(tokensAndUsers()).toEqual(["app_user"]);

      const rotated = await t.token({
        grant_type: "refresh_token",
        refresh_token: signIn.json().refresh_token,
      });
      expect(rotated.statusCode).toBe(200);
      expect(tokensAndUsers()).toContain("oauth_token");
    } finally {
      stop();
    }
  });
});
