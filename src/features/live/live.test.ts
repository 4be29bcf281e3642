import { connect } from "node:net";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildTestApp,
  type TestApp,
  testClient,
  testPassword,
  uniqueName,
} from "../../../test/helpers/app.ts";
import { blockedBy, otherSession, testDatabaseKind } from "../../../test/helpers/database.ts";
import {
  createAxis,
  createAxisData,
  createMachine,
  createTool,
  createToolUsage,
} from "../../../test/helpers/factories.ts";
import { LiveTestClient, type Message, sleep, until } from "../../../test/helpers/live-client.ts";
import { tokenHash } from "../auth/tokens.ts";
import { liveEncodings } from "./live-encoding.ts";
import type { LiveOptions } from "./live-hub.ts";

const axisNames = ["X", "Y", "Z"];

interface Fixture {
  t: TestApp;
  url: string;
  machines: number[];
  /** axis id by `${machine}:${name}` */
  axes: Map<string, number>;
  tool: number;
}

async function fixture(live: Partial<LiveOptions> = {}): Promise<Fixture> {
  const t = await buildTestApp({}, { live });
  await t.app.listen({ port: 0, host: "127.0.0.1" });
  const address = t.app.server.address() as { port: number };
  const machines: number[] = [];
  const axes = new Map<string, number>();
  for (let i = 0; i < 2; i++) {
    const machine = (await createMachine(t)).machine_id as number;
    machines.push(machine);
    for (const axis_name of axisNames)
      axes.set(`${machine}:${axis_name}`, (await createAxis(t, machine, { axis_name })).axis_id);
  }
  const tool = (await createTool(t, machines[0]!, { update_timestamp: "2020-01-01T00:00:00Z" }))
    .tool_id as number;
  return { t, url: `ws://127.0.0.1:${address.port}/ws/machine_data/`, machines, axes, tool };
}

let tick = 0;
/** A distinct instant per call. */
const at = () => new Date(Date.now() - 60_000 + ++tick).toISOString();

/** Commits one sample per listed axis, `actual_position` = value. */
async function ingestAxes(
  f: Fixture,
  value: number,
  machines = f.machines,
  names = axisNames,
  timestamp = at(),
) {
  await f.t.services.ingest.ingest({
    axis_data: machines.flatMap((machine_id) =>
      names.map((axis_name) => ({
        machine_id,
        axis_name,
        actual_position: value,
        target_position: value + 1,
        velocity: 10,
        acceleration: 1,
        homed: true,
        timestamp,
      })),
    ),
  });
}

async function signedIn(f: Fixture, groups = ["Operator"], scope?: string) {
  const auth = await f.t.userAuth(groups, scope);
  const token = auth.authorization.slice("Bearer ".length);
  const client = await LiveTestClient.open(f.url, { authorization: auth.authorization });
  await client.next((m) => m.type === "authenticated");
  return { client, token };
}

const pushes = (client: LiveTestClient, type = "axis_data") =>
  client.messages.filter((m) => m.type === type && m.seq !== undefined && !m.snapshot);

/** A message's rows whatever its encoding: `data` as is, or `columns` turned back into rows. */
function rowsOf(message: Message): Message[] {
  if (message.data) return message.data;
  const columns = message.columns as Record<string, unknown[]>;
  const fields = Object.keys(columns);
  const count = columns[fields[0]!]!.length;
  for (const field of fields) expect(columns[field]!.length).toBe(count);
  return Array.from({ length: count }, (_, i) =>
    Object.fromEntries(fields.map((field) => [field, columns[field]![i]])),
  );
}

let f: Fixture;
const clients: LiveTestClient[] = [];
const track = (client: LiveTestClient) => {
  clients.push(client);
  return client;
};

beforeAll(async () => {
  f = await fixture({ authTimeoutMs: 1000, heartbeatMs: 1000, ringTicks: 8, maxReplayRows: 12 });
});
afterAll(async () => {
  for (const client of clients) client.close();
  await f.t.close();
});

describe("authentication", () => {
  it("accepts the upgrade's Authorization header", async () => {
    const { client } = await signedIn(f);
    track(client);
    const answer = await client.ask({ type: "get_machine_data" }, "machine_data");
    expect(answer.data.map((m: Message) => m.machine_id)).toEqual(
      expect.arrayContaining(f.machines),
    );
  });

  it("accepts ?token=", async () => {
    const auth = await f.t.userAuth(["Operator"]);
    const token = auth.authorization.slice("Bearer ".length);
    const client = track(await LiveTestClient.open(`${f.url}?token=${encodeURIComponent(token)}`));
    expect((await client.next()).type).toBe("authenticated");
  });

  it("accepts a first authenticate message", async () => {
    const auth = await f.t.userAuth(["Operator"]);
    const client = track(await LiveTestClient.open(f.url));
    client.send({ type: "authenticate", token: auth.authorization.slice("Bearer ".length) });
    expect((await client.next()).type).toBe("authenticated");
    expect((await client.ask({ type: "get_tool_data" }, "tool_data")).data).toBeInstanceOf(Array);
  });

  it("answers nothing but Not authenticated before, and pushes nothing", async () => {
    const client = track(await LiveTestClient.open(f.url));
    for (const type of ["get_machine_data", "get_axis_data", "get_tool_data", "subscribe"])
      client.send({ type });
    client.send("not json");
    client.ws.send(Buffer.from([0x81, 0xa4]), { binary: true });
    await ingestAxes(f, 1);
    await until(() => client.messages.length >= 6);
    await sleep(50);
    expect(client.messages).toEqual(Array(6).fill({ type: "error", message: "Not authenticated" }));
  });

  it.each([
    ["an unknown token in the header", { authorization: "Bearer spa_nope" }, ""],
    ["a malformed header", { authorization: "Token abc" }, ""],
    ["an unknown ?token=", {}, "?token=spa_nope"],
  ])("closes 4401 on %s", async (_name, headers, query) => {
    const client = track(await LiveTestClient.open(f.url + query, headers));
    expect((await client.closedWith()).code).toBe(4401);
    expect(client.messages.filter((m) => m.type !== "error")).toEqual([]);
  });

  it("closes 4401 on an unknown token in the authenticate message", async () => {
    const client = track(await LiveTestClient.open(f.url));
    client.send({ type: "authenticate", token: "spa_nope" });
    expect(await client.closedWith()).toEqual({ code: 4401, reason: "Invalid token" });
  });

  it("closes a socket that does not authenticate in time", async () => {
    const client = track(await LiveTestClient.open(f.url));
    expect(await client.closedWith()).toEqual({ code: 4401, reason: "Not authenticated in time" });
  });

  it("rejects a user in no group, and a token without the read scope (4403)", async () => {
    for (const [groups, scope] of [
      [[], undefined],
      [["Admin"], "ingest"],
    ] as const) {
      const auth = await f.t.userAuth([...groups], scope);
      const client = track(await LiveTestClient.open(f.url, auth));
      expect((await client.closedWith()).code).toBe(4403);
      expect(client.messages.filter((m) => m.type !== "error")).toEqual([]);
    }
  });

  it("closes 4401 when the token is revoked", async () => {
    const { client, token } = await signedIn(f);
    track(client);
    client.send({ type: "subscribe" });
    await client.next((m) => m.snapshot);
    const answer = await f.t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: { token, client_id: testClient.id, client_secret: testClient.secret },
    });
    expect(answer.statusCode).toBe(200);
    const closed = await client.closedWith();
    expect(closed.code).toBe(4401);
    expect(closed.reason).toMatch(/revoked/);
  });

  it("closes 4401 when its user is deactivated, and when its user is taken out of every group, 4403", async () => {
    const deactivated = await f.t.userAuth(["Operator"]);
    const removed = await f.t.userAuth(["Operator"]);
    const sockets = [];
    for (const auth of [deactivated, removed]) {
      const client = track(await LiveTestClient.open(f.url, auth));
      await client.next((m) => m.type === "authenticated");
      client.send({ type: "subscribe" });
      await client.next((m) => m.snapshot);
      sockets.push(client);
    }
    const users = await f.t.services.users.listUsers();
    const idOf = (username: string) => users.find((user) => user.username === username)!.id;
    await f.t.services.users.updateUser(idOf(deactivated.username), { is_active: false });
    expect(await sockets[0]!.closedWith()).toEqual({
      code: 4401,
      reason: "Token revoked or expired",
    });
    await f.t.services.users.changeMembership("remove", removed.username, "Operator");
    expect((await sockets[1]!.closedWith()).code).toBe(4403);
  });

  it("closes 4401 on a user's other sessions when they change their password, not on this one", async () => {
    const { client: here, token } = await signedIn(f);
    track(here);
    const { username } = (
      await f.t.inject({ url: "/users/me/", headers: { authorization: `Bearer ${token}` } })
    ).json();
    const other = await f.t.token({ grant_type: "password", username, password: testPassword });
    const elsewhere = track(
      await LiveTestClient.open(f.url, { authorization: `Bearer ${other.json().access_token}` }),
    );
    await elsewhere.next((m) => m.type === "authenticated");
    const changed = await f.t.inject({
      method: "POST",
      url: "/users/me/password/",
      headers: { authorization: `Bearer ${token}` },
      payload: { old_password: testPassword, new_password: "Lathe-Quartz-Meadow-77" },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(await elsewhere.closedWith()).toEqual({
      code: 4401,
      reason: "Token revoked or expired",
    });
    // This session's socket still answers.
    here.send({ type: "get_machine_data" });
    await here.next((m) => m.type === "machine_data");
    expect(here.ws.readyState).toBe(here.ws.OPEN);
  });

  it("keeps sockets whose token is still valid when another is revoked", async () => {
    const { client } = await signedIn(f);
    track(client);
    const other = await signedIn(f);
    track(other.client);
    await f.t.inject({
      method: "POST",
      url: "/o/revoke_token/",
      payload: { token: other.token, client_id: testClient.id, client_secret: testClient.secret },
    });
    await other.client.closedWith();
    expect((await client.ask({ type: "get_machine_data" }, "machine_data")).type).toBe(
      "machine_data",
    );
    expect(client.closed).toBeUndefined();
  });

  it("closes 4429 on a user's socket beyond maxSocketsPerUser, and no other", async () => {
    const small = await fixture({ maxSocketsPerUser: 2 });
    const open: LiveTestClient[] = [];
    const connect = async (authorization: string) => {
      const client = await LiveTestClient.open(small.url, { authorization });
      open.push(client);
      return client;
    };
    try {
      const ann = await small.t.userAuth(["Operator"]);
      const [first, second] = [await connect(ann.authorization), await connect(ann.authorization)];
      for (const client of [first, second]) await client.next((m) => m.type === "authenticated");
      const third = await connect(ann.authorization);
      expect(await third.closedWith()).toEqual({
        code: 4429,
        reason: "Too many live connections for this user",
      });
      // A renewal on an open socket is still one socket.
      first.send({ type: "authenticate", token: ann.authorization.slice("Bearer ".length) });
      await first.next((m) => m.type === "authenticated");
      expect(first.closed).toBeUndefined();
      // Another user has places of their own.
      const bob = await connect((await small.t.userAuth(["Operator"])).authorization);
      await bob.next((m) => m.type === "authenticated");
      // A socket that closes frees its place.
      second.close();
      await until(() => small.t.services.live.stats().connections === 2);
      const again = await connect(ann.authorization);
      await again.next((m) => m.type === "authenticated");
      expect(again.closed).toBeUndefined();
      // A renewal with another user's token moves the socket to them: it takes a place of
      // theirs, and Ann has none left.
      bob.send({ type: "authenticate", token: ann.authorization.slice("Bearer ".length) });
      expect(await bob.closedWith()).toEqual({
        code: 4429,
        reason: "Too many live connections for this user",
      });
    } finally {
      for (const client of open) client.close();
      await small.t.close();
    }
  });
});

describe("seed messages", () => {
  it("answer the latest values from memory in the seed's shapes", async () => {
    const { client } = await signedIn(f);
    track(client);
    await ingestAxes(f, 42);
    await f.t.services.ingest.ingest({
      tool_data: [{ tool_id: f.tool, tool_offset: 3.5, feedrate: 900, timestamp: at() }],
      tool_usage: [{ machine_id: f.machines[0], tool_in_use: f.tool, timestamp: at() }],
    });
    const axes = await client.ask({ type: "get_axis_data" }, "axis_data");
    const x = axes.data.find((row: Message) => row.axis === f.axes.get(`${f.machines[0]}:X`));
    expect(x).toEqual({
      axis: f.axes.get(`${f.machines[0]}:X`),
      machine_id: f.machines[0],
      machine_name: `Machine ${f.machines[0]}`,
      axis_name: "X",
      actual_position: 42,
      target_position: 43,
      distance_to_go: 1,
      homed: true,
      acceleration: 1,
      velocity: 10,
      update_timestamp: expect.any(String),
    });
    const tools = await client.ask({ type: "get_tool_data" }, "tool_data");
    expect(tools.data).toContainEqual({
      tool_id: f.tool,
      machine: f.machines[0],
      tool_offset: 3.5,
      feedrate: 900,
      update_timestamp: expect.any(String),
    });
    const machines = await client.ask({ type: "get_machine_data" }, "machine_data");
    expect(machines.data).toContainEqual({
      machine_id: f.machines[1],
      machine_name: `Machine ${f.machines[1]}`,
      tool_capacity: 24,
    });
  });

  it("forget a deleted machine's values, in answers and snapshots", async () => {
    const { client } = await signedIn(f);
    track(client);
    const machine = (await createMachine(f.t)).machine_id as number;
    const axis = (await createAxis(f.t, machine, { axis_name: "X" })).axis_id as number;
    const tool = (await createTool(f.t, machine)).tool_id as number;
    await f.t.services.ingest.ingest({
      tool_data: [tool, f.tool].map((tool_id) => ({
        tool_id,
        tool_offset: 1,
        feedrate: 2,
        timestamp: at(),
      })),
    });
    const tools = async () =>
      (await client.ask({ type: "get_tool_data" }, "tool_data")).data.map(
        (r: Message) => r.tool_id,
      );
    expect(await tools()).toContain(tool);
    await ingestAxes(f, 5, [...f.machines, machine], ["X"]);
    const axes = async () =>
      (await client.ask({ type: "get_axis_data" }, "axis_data")).data.map((r: Message) => r.axis);
    expect(await axes()).toContain(axis);
    const deleted = await f.t.inject({
      method: "DELETE",
      url: `/data/machines/${machine}/`,
      headers: f.t.adminAuth,
    });
    expect(deleted.statusCode).toBe(204);
    expect(await tools()).not.toContain(tool);
    expect(await tools()).toContain(f.tool);
    expect(await axes()).not.toContain(axis);
    expect(await axes()).toContain(f.axes.get(`${f.machines[0]}:X`));
    client.send({ type: "subscribe" });
    const snapshot = await client.next((m) => m.type === "axis_data" && m.snapshot);
    const snapshotAxes = snapshot.data.map((r: Message) => r.axis);
    expect(snapshotAxes).not.toContain(axis);
    expect(snapshotAxes).toContain(f.axes.get(`${f.machines[1]}:X`));
  });
});

describe("subscriptions", () => {
  it("answer with a snapshot, then push exactly the subscribed rows and fields", async () => {
    const [m0, m1] = f.machines as [number, number];
    const { client } = await signedIn(f);
    track(client);
    client.send({
      type: "subscribe",
      machines: [m1],
      axes: ["X", "Y"],
      fields: ["actual_position"],
    });
    const snapshot = await client.next((m) => m.type === "axis_data" && m.snapshot);
    expect(snapshot.seq).toBeTypeOf("number");
    for (const row of snapshot.data) expect(Object.keys(row)).toEqual(["axis", "actual_position"]);
    await ingestAxes(f, 7);
    const push = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(push.seq).toBeGreaterThan(snapshot.seq);
    expect(push.data.sort((a: Message, b: Message) => a.axis - b.axis)).toEqual(
      [`${m1}:X`, `${m1}:Y`].map((key) => ({ axis: f.axes.get(key), actual_position: 7 })),
    );
    // Nothing of the other machine or axis, ever.
    await ingestAxes(f, 8, [m0]);
    await ingestAxes(f, 9, [m1], ["Z"]);
    await ingestAxes(f, 10, [m1], ["X"]);
    const last = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(last.data).toEqual([{ axis: f.axes.get(`${m1}:X`), actual_position: 10 }]);
  });

  it("push every row of every kind to an unfiltered subscriber", async () => {
    const { client } = await signedIn(f);
    track(client);
    client.send({ type: "subscribe" });
    await client.next((m) => m.type === "tool_usage" && m.snapshot);
    await ingestAxes(f, 11);
    const push = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(push.data).toHaveLength(f.machines.length * axisNames.length);
    expect(Object.keys(push.data[0])).toHaveLength(11);
    await f.t.services.ingest.ingest({
      tool_data: [{ tool_id: f.tool, tool_offset: 4.5, feedrate: 800, timestamp: at() }],
      tool_usage: [{ machine_id: f.machines[0], tool_in_use: f.tool, timestamp: at() }],
    });
    expect((await client.next((m) => m.type === "tool_data")).data[0]).toMatchObject({
      tool_id: f.tool,
      tool_offset: 4.5,
    });
    expect((await client.next((m) => m.type === "tool_usage")).data[0]).toMatchObject({
      machine: f.machines[0],
      tool_in_use: f.tool,
    });
  });

  it("share one group, and identical bytes, among subscribers with the same filter", async () => {
    const a = track((await signedIn(f)).client);
    const b = track((await signedIn(f)).client);
    const groupsBefore = f.t.services.live.stats().groups;
    const filter = { type: "subscribe", machines: [f.machines[0]], axes: ["Z"] };
    a.send(filter);
    b.send({ ...filter, axes: ["Z"], machines: [f.machines[0]] });
    await a.next((m) => m.snapshot);
    await b.next((m) => m.snapshot);
    expect(f.t.services.live.stats().groups).toBe(groupsBefore + 1);
    await ingestAxes(f, 12);
    const [pa, pb] = [await a.next((m) => !m.snapshot), await b.next((m) => !m.snapshot)];
    expect(pa).toEqual(pb);
  });

  it("stop after unsubscribe", async () => {
    const { client } = await signedIn(f);
    track(client);
    client.send({ type: "subscribe" });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    await client.ask({ type: "unsubscribe" }, "unsubscribed");
    const before = pushes(client).length;
    const seq = f.t.services.live.stats().seq;
    await ingestAxes(f, 13);
    // A later answer proves the tick went by without a push.
    await until(() => f.t.services.live.stats().seq > seq);
    await sleep(30);
    await client.ask({ type: "get_machine_data" }, "machine_data");
    expect(pushes(client).length).toBe(before);
  });

  it("honour max_rate_hz by conflating between pushes", async () => {
    const { client } = await signedIn(f);
    track(client);
    client.send({ type: "subscribe", machines: [f.machines[0]], axes: ["X"], max_rate_hz: 2 });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    for (let value = 100; value < 105; value++) await ingestAxes(f, value);
    await until(() =>
      pushes(client).some((m) => m.data.some((r: Message) => r.actual_position === 104)),
    );
    expect(pushes(client).length).toBeLessThan(5);
  });

  it("never push faster than max_rate_hz, at a rate that does not divide the sweep's grid", async () => {
    const { client } = await signedIn(f);
    track(client);
    const rate = 15; // one push per 66.7 ms; the sweep runs every 25 ms
    const subscribedAt = performance.now();
    client.send({ type: "subscribe", machines: [f.machines[0]], axes: ["X"], max_rate_hz: rate });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    // News far more often than the rate allows (about every 10 ms), for over a second.
    let value = 1000;
    while (performance.now() - subscribedAt < 1500) {
      await ingestAxes(f, value++, [f.machines[0]!], ["X"]);
      await sleep(10);
    }
    const last = value - 1;
    await until(() =>
      pushes(client).some((m) => m.data.some((r: Message) => r.actual_position === last)),
    );
    const lastAt = performance.now();
    // Whatever the delays on either side, the server sent them all between the subscribe and
    // now: at most one per interval, plus the one a sweep early that the due times allow.
    const sent = pushes(client).length;
    expect(sent).toBeGreaterThan(3);
    expect(sent).toBeLessThanOrEqual(Math.floor((rate * (lastAt - subscribedAt)) / 1000) + 2);
  });

  it("push a series forward only: a late or repeated sample is history, not news", async () => {
    const { client } = await signedIn(f);
    track(client);
    const machine = f.machines[1]!;
    const x = f.axes.get(`${machine}:X`);
    client.send({ type: "subscribe", machines: [machine], axes: ["X"] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    const fresh = at();
    await ingestAxes(f, 50, [machine], ["X"], fresh);
    await ingestAxes(f, 51, [machine], ["X"], new Date(Date.parse(fresh) - 600_000).toISOString());
    // The same instant again, with another value: the database keeps the first.
    await ingestAxes(f, 52, [machine], ["X"], fresh);
    const answer = await client.ask({ type: "get_axis_data" }, "axis_data");
    expect(answer.data.find((row: Message) => row.axis === x).actual_position).toBe(50);
    await ingestAxes(f, 53, [machine], ["X"]);
    const values = () => pushes(client).map((m) => m.data[0].actual_position);
    await until(() => values().includes(53));
    expect(values()).toEqual([50, 53]);
  });

  it("after a restart, push nothing older than the values loaded at start", async () => {
    const machine = (await createMachine(f.t)).machine_id as number;
    await createAxis(f.t, machine, { axis_name: "X" });
    const axis = (await createAxis(f.t, machine, { axis_name: "Y" })).axis_id as number;
    const [first, second] = [
      (await createTool(f.t, machine)).tool_id as number,
      (await createTool(f.t, machine)).tool_id as number,
    ];
    // What a previous run stored, and this one loads at start (server.ts): nothing pushed yet.
    const stored = at();
    const before = new Date(Date.parse(stored) - 1000).toISOString();
    await f.t.services.partitions.ensure([Date.parse(stored)]);
    await f.t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
       values ($1, $2, 7, 7, 0, 0, true)`,
      [axis, stored],
    );
    await f.t.database.db.query(
      "insert into tool_usage (machine_id, tool_in_use, update_timestamp) values ($1, $2, $3)",
      [machine, second, stored],
    );
    await f.t.services.latest.load(f.t.database.db, new Date(Date.now() - 86_400_000));
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine] });
    const snapshot = await client.next((m) => m.type === "tool_usage" && m.snapshot);
    expect(snapshot.data.map((row: Message) => row.tool_in_use)).toEqual([second]);
    // A producer's batch from before the restart, sent again: stored or not, it is history.
    await f.t.services.ingest.ingest({
      axis_data: [
        {
          machine_id: machine,
          axis_name: "Y",
          actual_position: 1,
          target_position: 1,
          velocity: 0,
          acceleration: 0,
          homed: true,
          timestamp: before,
        },
      ],
      tool_usage: [{ machine_id: machine, tool_in_use: first, timestamp: before }],
    });
    // Then news.
    await ingestAxes(f, 8, [machine], ["X"]);
    await until(() => pushes(client).length > 0);
    expect(pushes(client).map((m) => m.data.map((row: Message) => row.axis_name))).toEqual([["X"]]);
    expect(pushes(client, "tool_usage")).toEqual([]);
    const answer = await client.ask({ type: "get_axis_data" }, "axis_data");
    expect(answer.data.find((row: Message) => row.axis === axis).actual_position).toBe(7);
  });

  it("show and push what the database stored at an instant, never a duplicate it refused", async () => {
    const machine = (await createMachine(f.t)).machine_id as number;
    const axis = (await createAxis(f.t, machine, { axis_name: "X" })).axis_id as number;
    const [kept, refused] = [
      (await createTool(f.t, machine)).tool_id as number,
      (await createTool(f.t, machine)).tool_id as number,
    ];
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    // Another server (or this one before a restart) stored these; this one's cache never saw them.
    const instant = at();
    await f.t.services.partitions.ensure([Date.parse(instant)]);
    await f.t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
       values ($1, $2, 7, 8, 0, 0, false)`,
      [axis, instant],
    );
    await f.t.database.db.query(
      "insert into tool_usage (machine_id, tool_in_use, update_timestamp) values ($1, $2, $3)",
      [machine, kept, instant],
    );
    // A producer sends the same instants with other values, and a new sample beside them.
    const later = at();
    const sample = (timestamp: string, value: number) => ({
      machine_id: machine,
      axis_name: "X",
      actual_position: value,
      target_position: value,
      velocity: 1,
      acceleration: 1,
      homed: true,
      timestamp,
    });
    const result = await f.t.services.ingest.ingest({
      axis_data: [sample(instant, 99)],
      tool_usage: [{ machine_id: machine, tool_in_use: refused, timestamp: instant }],
    });
    expect(result).toEqual({ accepted: 2, duplicates: 2 });
    const answer = await client.ask({ type: "get_axis_data" }, "axis_data");
    const row = answer.data.find((r: Message) => r.axis === axis);
    expect([row.actual_position, row.target_position, row.homed]).toEqual([7, 8, false]);
    const late = track((await signedIn(f)).client);
    late.send({ type: "subscribe", machines: [machine] });
    const snapshot = await late.next((m) => m.type === "tool_usage" && m.snapshot);
    expect(snapshot.data.map((r: Message) => r.tool_in_use)).toEqual([kept]);
    const usage = pushes(client, "tool_usage").flatMap((m) => m.data);
    expect(usage.map((r: Message) => r.tool_in_use)).not.toContain(refused);
    // The stored values are what was pushed, and a new sample beside a duplicate is itself.
    await f.t.services.ingest.ingest({ axis_data: [sample(instant, 98), sample(later, 5)] });
    await until(() =>
      pushes(client).some((m) => m.data.some((r: Message) => r.actual_position === 5)),
    );
    const pushed = pushes(client).flatMap((m) => m.data.map((r: Message) => r.actual_position));
    expect(pushed).not.toContain(99);
    expect(pushed).not.toContain(98);
    expect(pushed.at(-1)).toBe(5);
  });

  it("keep ticks in order, each once, while the catalog reloads between them", async () => {
    const { client } = await signedIn(f);
    track(client);
    client.send({ type: "subscribe", machines: [f.machines[0]], axes: ["Z"] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    const other = track((await signedIn(f)).client);
    for (let value = 60; value < 64; value++) {
      f.t.services.changes.changed("machine");
      await ingestAxes(f, value, f.machines.slice(0, 1), ["Z"]);
      // Another socket's question loads the catalog meanwhile.
      other.send({ type: "get_machine_data" });
    }
    await until(() => pushes(client).some((m) => m.data[0].actual_position === 63));
    await sleep(30);
    expect(pushes(client).map((m) => m.data[0].actual_position)).toEqual([60, 61, 62, 63]);
    const seqs = pushes(client).map((m) => m.seq as number);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it("do not keep a socket that closes while its subscribe waits for the catalog", async () => {
    const live = f.t.services.live;
    const { client } = await signedIn(f);
    const before = live.stats();
    f.t.services.changes.changed("axis");
    client.send({
      type: "subscribe",
      machines: [f.machines[1]],
      axes: ["Y"],
      fields: ["velocity"],
    });
    client.close();
    await until(() => live.stats().connections === before.connections - 1);
    await sleep(100);
    expect(live.stats().groups).toBe(before.groups);
  });

  it("narrow when the socket renews with a token that may see less", async () => {
    const { client } = await signedIn(f);
    track(client);
    const control = track((await signedIn(f)).client);
    for (const c of [client, control]) {
      c.send({ type: "subscribe", machines: [f.machines[0]], axes: ["X"] });
      await c.next((m) => m.type === "axis_data" && m.snapshot);
    }
    await ingestAxes(f, 70, f.machines.slice(0, 1), ["X"]);
    await client.next((m) => m.type === "axis_data" && !m.snapshot);
    const group = uniqueName("tools-only");
    await f.t.services.users.createGroup(group, ["machine.view", "tool.view"]);
    const narrow = await f.t.userAuth([group]);
    client.send({ type: "authenticate", token: narrow.authorization.slice("Bearer ".length) });
    await client.next((m) => m.type === "authenticated");
    const before = pushes(client).length;
    await ingestAxes(f, 71, f.machines.slice(0, 1), ["X"]);
    // Both sockets are sent a tick's pushes in one turn: once the control has it, so would the
    // narrowed one.
    await control.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 71);
    await client.ask({ type: "get_machine_data" }, "machine_data");
    expect(pushes(client).length).toBe(before);
    expect((await client.ask({ type: "get_axis_data" }, "error")).message).toMatch(/permission/);
  });

  it("narrow when a group loses a permission, and stay narrow when it is given back", async () => {
    const group = uniqueName("viewers");
    const all = ["machine.view", "axisdata.view", "tool.view"];
    await f.t.services.users.createGroup(group, all);
    const auth = await f.t.userAuth([group]);
    const client = track(await LiveTestClient.open(f.url, auth));
    await client.next((m) => m.type === "authenticated");
    const control = track((await signedIn(f)).client);
    for (const c of [client, control]) {
      c.send({ type: "subscribe", machines: [f.machines[0]] });
      await c.next((m) => m.type === "tool_data" && m.snapshot);
    }
    /** Until the socket's principal answers `get_tool_data` with `type` (a recheck ran). */
    const toolsAnswer = async (type: string) => {
      for (;;) {
        client.send({ type: "get_tool_data" });
        const answer = await client.next(
          (m) => m.type === "error" || (m.type === "tool_data" && m.seq === undefined),
        );
        if (answer.type === type) return;
        await sleep(20);
      }
    };
    let offset = 100;
    /** Commits a tool report and a sample; resolves once the control has both. */
    const report = async () => {
      offset += 1;
      await f.t.services.ingest.ingest({
        tool_data: [{ tool_id: f.tool, tool_offset: offset, feedrate: 800, timestamp: at() }],
      });
      await ingestAxes(f, offset, f.machines.slice(0, 1), ["X"]);
      await control.next((m) => !m.snapshot && m.data?.[0]?.tool_offset === offset);
      await control.next((m) => !m.snapshot && m.data?.[0]?.actual_position === offset);
      await client.ask({ type: "get_machine_data" }, "machine_data");
    };
    const toolPushes = () => pushes(client, "tool_data").length;
    const axisPushes = () => pushes(client).length;

    await report();
    expect(toolPushes()).toBe(1);
    await f.t.services.users.setGroupPermissions(group, ["machine.view", "axisdata.view"]);
    await toolsAnswer("error");
    await report();
    expect(toolPushes()).toBe(1);
    expect(axisPushes()).toBe(2);
    // Given back, tools would resume without their snapshot: the client subscribes again.
    await f.t.services.users.setGroupPermissions(group, all);
    await toolsAnswer("tool_data");
    await report();
    expect(toolPushes()).toBe(1);
    expect(axisPushes()).toBe(3);
  });

  it("are refused, with an error, to a principal that may see none of what is pushed", async () => {
    const group = uniqueName("machines-only");
    await f.t.services.users.createGroup(group, ["machine.view"]);
    const auth = await f.t.userAuth([group]);
    const client = track(await LiveTestClient.open(f.url, auth));
    await client.next((m) => m.type === "authenticated");
    const answer = await client.ask({ type: "subscribe" }, "error");
    expect(answer.message).toMatch(/^subscribe: .*permission/);
    await ingestAxes(f, 75);
    await client.ask({ type: "get_machine_data" }, "machine_data");
    expect(client.messages.filter((m) => m.seq !== undefined)).toEqual([]);
  });
});

/** An Admin's request through the CRUD endpoints, which must succeed; its answer's body. */
const rest = async (method: "POST" | "PUT" | "PATCH" | "DELETE", url: string, body?: object) => {
  const answer = await f.t.inject({
    method,
    url,
    headers: f.t.adminAuth,
    ...(body ? { payload: body } : {}),
  });
  expect(answer.statusCode, answer.body).toBeLessThan(300);
  return method === "DELETE" ? undefined : answer.json();
};

describe("machine data written through the CRUD endpoints", () => {
  it("is pushed and answered like ingested data: samples added, corrected and deleted", async () => {
    const machine = f.machines[1]!;
    const x = f.axes.get(`${machine}:X`)!;
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine], axes: ["X"] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    await ingestAxes(f, 900, [machine], ["X"]);
    await client.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 900);
    // Answers are asked on a socket of their own: asking skips the pushes before the answer.
    const asker = track((await signedIn(f)).client);
    const newestX = async () =>
      (await asker.ask({ type: "get_axis_data" }, "axis_data")).data.find(
        (row: Message) => row.axis === x,
      );

    const sample = await rest("POST", "/data/axises/", {
      axis: x,
      actual_position: 901,
      target_position: 902,
      homed: true,
      acceleration: 0,
      velocity: 5,
      update_timestamp: at(),
    });
    const added = await client.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 901);
    expect(added.data[0]).toMatchObject({ axis: x, target_position: 902, velocity: 5 });
    expect((await newestX()).actual_position).toBe(901);

    await rest("PATCH", `/data/axises/${sample.axis_data_id}/`, { actual_position: 911 });
    await client.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 911);
    expect((await newestX()).actual_position).toBe(911);

    // Deleted, the newest stored sample is the ingested one again.
    await rest("DELETE", `/data/axises/${sample.axis_data_id}/`);
    expect((await newestX()).actual_position).toBe(900);
    await client.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 900);
    // A correction of an older sample changes nothing that is newest: nothing is pushed.
    const older = await rest("POST", "/data/axises/", {
      axis: x,
      actual_position: 5,
      target_position: 5,
      homed: true,
      acceleration: 0,
      velocity: 0,
      update_timestamp: new Date(Date.now() - 3_600_000).toISOString(),
    });
    const before = pushes(client).length;
    await rest("PATCH", `/data/axises/${older.axis_data_id}/`, { actual_position: 6 });
    await ingestAxes(f, 920, [machine], ["X"]);
    const next = await client.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 920);
    expect(pushes(client).indexOf(next)).toBe(before);
  });

  it("keeps tools as stored: edited, moved to another machine, deleted", async () => {
    const [first, second] = f.machines as [number, number];
    const tool = await rest("POST", "/data/tools/", {
      machine: first,
      tool_offset: 1,
      feedrate: 100,
      update_timestamp: "2021-01-01T00:00:00Z",
    });
    const watchers = [[first], [second], [first, second]].map(async (machines) => {
      const client = track((await signedIn(f)).client);
      client.send({ type: "subscribe", machines });
      await client.next((m) => m.type === "tool_data" && m.snapshot);
      return client;
    });
    const [onFirst, onSecond, onBoth] = (await Promise.all(watchers)) as LiveTestClient[] as [
      LiveTestClient,
      LiveTestClient,
      LiveTestClient,
    ];
    const listed = async () =>
      (await onFirst.ask({ type: "get_tool_data" }, "tool_data")).data.find(
        (row: Message) => row.tool_id === tool.tool_id,
      );
    expect(await listed()).toMatchObject({ machine: first, tool_offset: 1 });

    // Same timestamp, new offset: a REST edit is the tool's state, whatever its time.
    await rest("PATCH", `/data/tools/${tool.tool_id}/`, { tool_offset: 2.5 });
    const edited = await onFirst.next((m) => m.type === "tool_data" && !m.snapshot);
    expect(edited.data).toEqual([
      expect.objectContaining({ tool_id: tool.tool_id, tool_offset: 2.5 }),
    ]);
    expect(await listed()).toMatchObject({ tool_offset: 2.5 });

    await rest("PATCH", `/data/tools/${tool.tool_id}/`, { machine: second });
    const moved = await onSecond.next((m) => m.type === "tool_data" && !m.snapshot);
    expect(moved.data).toEqual([
      expect.objectContaining({ tool_id: tool.tool_id, machine: second }),
    ]);
    expect(moved.deleted).toBeUndefined();
    // The first machine's subscriber hears it left; one watching both, that it left and where it
    // is (deletions apply before rows).
    const left = await onFirst.next((m) => m.type === "tool_data" && !m.snapshot);
    expect(left).toMatchObject({ deleted: [tool.tool_id], data: [] });
    await onBoth.next((m) => m.type === "tool_data" && !m.snapshot); // the edit
    const both = await onBoth.next((m) => m.type === "tool_data" && !m.snapshot);
    expect(both.deleted).toEqual([tool.tool_id]);
    expect(both.data).toEqual([moved.data[0]]);
    expect(Object.keys(both)).toEqual(["type", "seq", "deleted", "data"]);
    expect(await listed()).toMatchObject({ machine: second });

    await rest("DELETE", `/data/tools/${tool.tool_id}/`);
    expect(await onSecond.next((m) => m.type === "tool_data" && !m.snapshot)).toMatchObject({
      deleted: [tool.tool_id],
      data: [],
    });
    expect(await listed()).toBeUndefined();
    const late = track((await signedIn(f)).client);
    late.send({ type: "subscribe", machines: [second] });
    const snapshot = await late.next((m) => m.type === "tool_data" && m.snapshot);
    expect(snapshot.data.map((row: Message) => row.tool_id)).not.toContain(tool.tool_id);
  });

  it("pushes a tool usage report and answers the one newest after a deletion", async () => {
    const machine = f.machines[0]!;
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine] });
    await client.next((m) => m.type === "tool_usage" && m.snapshot);
    /** Reports the tool in use now; resolves once the push of it has arrived. */
    const report = async () => {
      const row = await rest("POST", "/data/tool-usage/", {
        machine,
        tool_in_use: f.tool,
        update_timestamp: at(),
      });
      await client.next(
        (m) =>
          m.type === "tool_usage" &&
          Date.parse(m.data?.[0]?.update_timestamp) === Date.parse(row.update_timestamp),
      );
      return row;
    };
    const earlier = await report();
    const newer = await report();
    await rest("DELETE", `/data/tool-usage/${newer.usage_id}/`);
    const again = await client.next((m) => m.type === "tool_usage" && !m.snapshot);
    expect(Date.parse(again.data[0].update_timestamp)).toBe(Date.parse(earlier.update_timestamp));
    const late = track((await signedIn(f)).client);
    late.send({ type: "subscribe", machines: [machine] });
    const snapshot = await late.next((m) => m.type === "tool_usage" && m.snapshot);
    expect(Date.parse(snapshot.data[0].update_timestamp)).toBe(
      Date.parse(earlier.update_timestamp),
    );
  });

  it("an axis moved to another machine leaves the first machine's subscribers and joins the second's", async () => {
    const [from, to] = [
      (await createMachine(f.t)).machine_id as number,
      (await createMachine(f.t)).machine_id as number,
    ];
    const axis = (await createAxis(f.t, from, { axis_name: "X" })).axis_id as number;
    await ingestAxes(f, 31, [from], ["X"]);
    const watch = async (machine: number) => {
      const client = track((await signedIn(f)).client);
      client.send({ type: "subscribe", machines: [machine] });
      return { client, snapshot: await client.next((m) => m.type === "axis_data" && m.snapshot) };
    };
    const onFrom = await watch(from);
    const onTo = await watch(to);
    expect(onFrom.snapshot.data.map((row: Message) => row.axis)).toEqual([axis]);
    expect(onTo.snapshot.data).toEqual([]);

    await rest("PATCH", `/data/axes/${axis}/`, { machine: to });
    expect(
      await onFrom.client.next((m) => m.type === "axis_data" && m.deleted?.includes(axis)),
    ).toMatchObject({ deleted: [axis], data: [] });
    const joined = await onTo.client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(joined.data).toEqual([
      expect.objectContaining({ axis, machine_id: to, axis_name: "X", actual_position: 31 }),
    ]);
    // Later snapshots and answers have it on its new machine.
    expect((await watch(from)).snapshot.data).toEqual([]);
    expect((await watch(to)).snapshot.data).toEqual([
      expect.objectContaining({ axis, machine_id: to }),
    ]);
    const asker = track((await signedIn(f)).client);
    const answer = await asker.ask({ type: "get_axis_data" }, "axis_data");
    expect(answer.data.find((row: Message) => row.axis === axis)).toMatchObject({ machine_id: to });
  });

  it("an axis renamed leaves the subscribers of its old name and joins those of its new one", async () => {
    const machine = (await createMachine(f.t)).machine_id as number;
    const axis = (await createAxis(f.t, machine, { axis_name: "X" })).axis_id as number;
    await ingestAxes(f, 41, [machine], ["X"]);
    const watch = async (filter: object) => {
      const client = track((await signedIn(f)).client);
      client.send({ type: "subscribe", machines: [machine], ...filter });
      return { client, snapshot: await client.next((m) => m.type === "axis_data" && m.snapshot) };
    };
    const onOld = await watch({ axes: ["X"] });
    const onNew = await watch({ axes: ["X2"] });
    const onAll = await watch({});
    // Held back between pushes: told by the conflated push, from what each series last did.
    const onOldSlowly = await watch({ axes: ["X"], max_rate_hz: 1 });
    expect(onOld.snapshot.data.map((row: Message) => row.axis)).toEqual([axis]);
    expect(onNew.snapshot.data).toEqual([]);

    await rest("PATCH", `/data/axes/${axis}/`, { axis_name: "X2" });
    for (const { client } of [onOld, onOldSlowly])
      expect(
        await client.next((m) => m.type === "axis_data" && m.deleted?.includes(axis)),
      ).toMatchObject({ deleted: [axis], data: [] });
    expect((await onNew.client.next((m) => m.type === "axis_data" && !m.snapshot)).data).toEqual([
      expect.objectContaining({ axis, axis_name: "X2", actual_position: 41 }),
    ]);
    // Deleted first, then the rows: a subscriber of both names keeps the axis, renamed.
    const renamed = await onAll.client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(renamed.deleted).toEqual([axis]);
    expect(renamed.data).toEqual([expect.objectContaining({ axis, axis_name: "X2" })]);
    expect((await watch({ axes: ["X"] })).snapshot.data).toEqual([]);
  });

  it("a tool deleted or an axis renamed by another writer is told to subscribers too", async () => {
    // Plain SQL: what another server, or a person at psql, does. Only the database's
    // notifications tell this server.
    const machine = (await createMachine(f.t)).machine_id as number;
    const axis = (await createAxis(f.t, machine, { axis_name: "X" })).axis_id as number;
    const tool = (await createTool(f.t, machine)).tool_id as number;
    await ingestAxes(f, 51, [machine], ["X"]);
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine], axes: ["X"] });
    const snapshot = await client.next((m) => m.type === "tool_data" && m.snapshot);
    expect(snapshot.data.map((row: Message) => row.tool_id)).toEqual([tool]);

    await f.t.database.db.query("delete from tool where tool_id = $1", [tool]);
    expect(
      await client.next((m) => m.type === "tool_data" && m.deleted?.includes(tool)),
    ).toMatchObject({ deleted: [tool], data: [] });
    const tools = await client.ask({ type: "get_tool_data" }, "tool_data");
    expect(tools.data.map((row: Message) => row.tool_id)).not.toContain(tool);

    await f.t.database.db.query("update axis set axis_name = 'X5' where axis_id = $1", [axis]);
    expect(
      await client.next((m) => m.type === "axis_data" && m.deleted?.includes(axis)),
    ).toMatchObject({ deleted: [axis], data: [] });
    const answer = await client.ask({ type: "get_axis_data" }, "axis_data");
    expect(answer.data.find((row: Message) => row.axis === axis)).toMatchObject({
      axis_name: "X5",
      actual_position: 51,
    });
  });

  it("a sample validated before its axis was renamed and committed after it ends in the new place", async () => {
    const machine = (await createMachine(f.t)).machine_id as number;
    const axis = (await createAxis(f.t, machine, { axis_name: "X" })).axis_id as number;
    await ingestAxes(f, 61, [machine], ["X"]);
    const watch = async (axes: string[]) => {
      const client = track((await signedIn(f)).client);
      client.send({ type: "subscribe", machines: [machine], axes });
      await client.next((m) => m.type === "axis_data" && m.snapshot);
      return client;
    };
    const [onOld, onNew] = [await watch(["X"]), await watch(["X6"])];
    await rest("PATCH", `/data/axes/${axis}/`, { axis_name: "X6" });
    await onOld.next((m) => m.type === "axis_data" && m.deleted?.includes(axis));
    // The pipeline takes a batch as validated: here, against the catalog before the rename.
    const time = at();
    await f.t.services.ingest.submit({
      axis: [
        {
          axisId: axis,
          machineId: machine,
          axisName: "X",
          time,
          timeMs: Date.parse(time),
          actualPosition: 62,
          targetPosition: 62,
          velocity: 0,
          acceleration: 0,
          homed: true,
        },
      ],
      tools: [],
      toolUsage: [],
    });
    await onNew.next(
      (m) => m.type === "axis_data" && m.data.some((row: Message) => row.actual_position === 62),
    );
    const answer = await onNew.ask({ type: "get_axis_data" }, "axis_data");
    expect(answer.data.find((row: Message) => row.axis === axis)).toMatchObject({
      axis_name: "X6",
      actual_position: 62,
    });
    // The old name's subscriber may have seen it pass, and is told again that it is gone.
    const lastToOld = () =>
      onOld.messages.filter((m) => m.type === "axis_data" && !m.snapshot).at(-1);
    await until(() => lastToOld()?.deleted?.includes(axis) === true);
    expect(lastToOld()).toMatchObject({ deleted: [axis], data: [] });
  });

  it("a machine deleted while no one subscribes takes its values with it, though its id is made again", async () => {
    const quiet = await fixture();
    try {
      const machine = quiet.machines[0]!;
      await ingestAxes(quiet, 5, [machine]);
      await createToolUsage(quiet.t, machine, quiet.tool);
      const answered = async (type: string) => {
        const client = track((await signedIn(quiet)).client);
        const answer = await client.ask({ type: `get_${type}` }, type);
        client.close();
        return answer.data as Message[];
      };
      expect((await answered("tool_data")).map((row) => row.tool_id)).toEqual([quiet.tool]);

      const remove = await quiet.t.inject({
        method: "DELETE",
        url: `/data/machines/${machine}/`,
        headers: quiet.t.adminAuth,
      });
      expect(remove.statusCode).toBe(204);
      const again = await quiet.t.inject({
        method: "POST",
        url: "/data/machines/",
        headers: quiet.t.adminAuth,
        payload: { machine_id: machine, machine_name: "made again", tool_capacity: 4 },
      });
      expect(again.statusCode).toBe(201);

      expect(await answered("tool_data")).toEqual([]);
      expect((await answered("axis_data")).filter((row) => row.machine_id === machine)).toEqual([]);
      const client = track((await signedIn(quiet)).client);
      client.send({ type: "subscribe", machines: [machine] });
      for (const type of ["axis_data", "tool_data", "tool_usage"])
        expect((await client.next((m) => m.type === type && m.snapshot)).data).toEqual([]);
    } finally {
      await quiet.t.close();
    }
  });
});

describe("deletions", () => {
  /** A push saying the series `key` of `type` is gone. */
  const deletion = (type: string, key: number) => (m: Message) =>
    m.type === type && !m.snapshot && Array.isArray(m.deleted) && m.deleted.includes(key);

  /** A machine of its own with axes X and Y, a tool, samples of both axes and a tool in use. */
  async function machineWithData() {
    const machine = (await createMachine(f.t)).machine_id as number;
    const [x, y] = await Promise.all(
      ["X", "Y"].map(async (axis_name) => (await createAxis(f.t, machine, { axis_name })).axis_id),
    );
    const tool = (await createTool(f.t, machine)).tool_id as number;
    await ingestAxes(f, 1, [machine], ["X", "Y"]);
    await createToolUsage(f.t, machine, tool);
    return { machine, x: x as number, y: y as number, tool };
  }

  /** A socket subscribed to one machine, once its snapshot holds that machine's tool. */
  async function watching(machine: number, extra: object = {}) {
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine], ...extra });
    const snapshot = await client.next((m) => m.type === "tool_data" && m.snapshot);
    expect(rowsOf(snapshot)).toHaveLength(1);
    return { client, snapshot };
  }

  it("tell a tool's subscribers it is gone, and no one else", async () => {
    const own = await machineWithData();
    const { client } = await watching(own.machine);
    const other = track((await signedIn(f)).client);
    other.send({ type: "subscribe", machines: [f.machines[1]] });
    await other.next((m) => m.type === "tool_data" && m.snapshot);

    await rest("DELETE", `/data/tools/${own.tool}/`);
    expect(await client.next(deletion("tool_data", own.tool))).toMatchObject({
      deleted: [own.tool],
      data: [],
    });
    // Data committed after the deletion comes after its push: the other machine's subscriber
    // has its data and nothing about the tool.
    await ingestAxes(f, 2, [f.machines[1]!], ["X"]);
    await other.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(other.messages.some((m) => m.deleted)).toBe(false);
  });

  it("tell subscribers when every sample of an axis, or every report of a tool in use, is deleted", async () => {
    const own = await machineWithData();
    const { client } = await watching(own.machine);
    const sample = await createAxisData(f.t, own.x, { update_timestamp: at() });
    await client.next((m) => m.type === "axis_data" && !m.snapshot);
    // The ingested sample is still stored: the corrected newest value is pushed, not a deletion.
    await rest("DELETE", `/data/axises/${sample.axis_data_id}/`);
    const corrected = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(corrected.deleted).toBeUndefined();
    expect(corrected.data).toEqual([expect.objectContaining({ axis: own.x, actual_position: 1 })]);

    const samples = (
      await f.t.inject({ url: `/data/axises/?axis=${own.x}`, headers: f.t.adminAuth })
    ).json() as { axis_data_id: number }[];
    for (const { axis_data_id } of samples) await rest("DELETE", `/data/axises/${axis_data_id}/`);
    expect(await client.next(deletion("axis_data", own.x))).toMatchObject({
      deleted: [own.x],
      data: [],
    });

    const reports = (
      await f.t.inject({ url: `/data/tool-usage/?machine=${own.machine}`, headers: f.t.adminAuth })
    ).json() as { usage_id: number }[];
    expect(reports).toHaveLength(1);
    await rest("DELETE", `/data/tool-usage/${reports[0]!.usage_id}/`);
    expect(await client.next(deletion("tool_usage", own.machine))).toMatchObject({
      deleted: [own.machine],
      data: [],
    });
    // Later snapshots leave both out; the other axis keeps its value.
    const { snapshot } = await watching(own.machine);
    expect(snapshot.data.map((row: Message) => row.tool_id)).toEqual([own.tool]);
    const late = track((await signedIn(f)).client);
    late.send({ type: "subscribe", machines: [own.machine] });
    const axes = await late.next((m) => m.type === "axis_data" && m.snapshot);
    expect(axes.data.map((row: Message) => row.axis)).toEqual([own.y]);
    const usage = await late.next((m) => m.type === "tool_usage" && m.snapshot);
    expect(usage.data).toEqual([]);
  });

  it("tell subscribers of a deleted axis, and of a deleted machine's axes, tool and tool in use, with no data to carry it", async () => {
    const own = await machineWithData();
    const { client } = await watching(own.machine);
    await rest("DELETE", `/data/axes/${own.y}/`);
    expect(await client.next(deletion("axis_data", own.y))).toMatchObject({
      deleted: [own.y],
      data: [],
    });

    await rest("DELETE", `/data/machines/${own.machine}/`);
    const axes = await client.next(deletion("axis_data", own.x));
    const tools = await client.next(deletion("tool_data", own.tool));
    const usage = await client.next(deletion("tool_usage", own.machine));
    // One tick: the machine went at once.
    expect([tools.seq, usage.seq]).toEqual([axes.seq, axes.seq]);
    expect(axes.deleted).toEqual([own.x]);
  });

  it("reach a subscriber held at its window once it acknowledges, then are forgotten", async () => {
    const own = await machineWithData();
    const { live } = f.t.services;
    const { client } = await watching(own.machine, { window: 1 });
    await ingestAxes(f, 3, [own.machine], ["X"]);
    const first = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    // Held, the window being full: a second tool comes and goes, and the first moves to another
    // machine and is deleted there (its removal from this machine must not be lost to that one).
    const other = (await createMachine(f.t)).machine_id as number;
    const second = (await createTool(f.t, own.machine)).tool_id as number;
    await rest("DELETE", `/data/tools/${second}/`);
    await rest("PATCH", `/data/tools/${own.tool}/`, { machine: other });
    await rest("DELETE", `/data/tools/${own.tool}/`);
    await sleep(200);
    expect(client.messages.some((m) => m.type === "tool_data" && !m.snapshot)).toBe(false);
    expect(live.stats().removals).toBeGreaterThan(0);

    client.send({ type: "ack", seq: first.seq });
    const owed = await client.next((m) => m.type === "tool_data" && !m.snapshot);
    expect(new Set(owed.deleted)).toEqual(new Set([own.tool, second]));
    expect(owed.data).toEqual([]);
    // Nobody is held from before it any more: the sweep lets it go.
    await until(() => live.stats().removals === 0);
  });

  it("are replayed to a client resuming after them, in its encoding", async () => {
    const own = await machineWithData();
    const { client, snapshot } = await watching(own.machine, { encoding: "json-columns" });
    client.close();
    await rest("DELETE", `/data/tools/${own.tool}/`);
    const again = track((await signedIn(f)).client);
    again.send({
      type: "subscribe",
      machines: [own.machine],
      encoding: "json-columns",
      since_seq: snapshot.seq,
    });
    const replayed = await again.next(deletion("tool_data", own.tool));
    expect(replayed.deleted).toEqual([own.tool]);
    expect(rowsOf(replayed)).toEqual([]);
    expect((await again.next((m) => m.type === "subscribed")).resumed).toBe(true);
  });
});

/**
 * A sample of `machine`'s axis X (id `axis`) committed but not yet published: a first flush waits
 * for `tool`'s row lock, taken in `other`'s open transaction, and the sample's flush commits and
 * waits for it to publish. Ending `other`'s transaction lets both go.
 */
async function sampleBehindHeldFlush(
  f: Fixture,
  other: pg.Client,
  tool: number,
  machine: number,
  axis: number,
) {
  await other.query("begin");
  await other.query("select 1 from tool where tool_id = $1 for update", [tool]);
  const first = f.t.services.ingest.ingest({
    tool_data: [{ tool_id: tool, tool_offset: 3, feedrate: 3, timestamp: at() }],
  });
  await blockedBy(other, "update tool %");
  const second = f.t.services.ingest.ingest({
    axis_data: [
      {
        machine_id: machine,
        axis_name: "X",
        actual_position: 66,
        target_position: 66,
        velocity: 0,
        acceleration: 0,
        homed: true,
        timestamp: at(),
      },
    ],
  });
  const stored = async () =>
    (await f.t.inject({ url: `/data/axises/?axis=${axis}`, headers: f.t.adminAuth })).json()
      .length as number;
  const deadline = Date.now() + 10_000;
  while ((await stored()) === 0) {
    expect(Date.now()).toBeLessThan(deadline);
    await sleep(10);
  }
  return { first, second };
}

describe.runIf(testDatabaseKind() === "postgres")("ingest racing another session", () => {
  /** Ingests one report of `tool` while `other` changes it (`change`), validated before and stored after. */
  async function reportDuring(tool: number, offset: number, change: string, values: unknown[]) {
    const other = await otherSession(f.t.database);
    try {
      await other.query("begin");
      await other.query(change, values);
      const ingesting = f.t.services.ingest.ingest({
        tool_data: [{ tool_id: tool, tool_offset: offset, feedrate: 8, timestamp: at() }],
      });
      await blockedBy(other, "update tool %");
      await other.query("commit");
      return await ingesting;
    } finally {
      await other.query("rollback").catch(() => {});
      await other.end();
    }
  }

  it("push a report on the machine its tool moved to meanwhile, and tell the first it left", async () => {
    const [first, second] = f.machines as [number, number];
    const tool = (await createTool(f.t, first, { update_timestamp: "2020-01-01T00:00:00Z" }))
      .tool_id as number;
    const [onFirst, onSecond] = await Promise.all(
      [first, second].map(async (machine) => {
        const client = track((await signedIn(f)).client);
        client.send({ type: "subscribe", machines: [machine] });
        await client.next((m) => m.type === "tool_data" && m.snapshot);
        return client;
      }),
    );
    const result = await reportDuring(
      tool,
      7,
      "update tool set machine_id = $1 where tool_id = $2",
      [second, tool],
    );
    expect(result.duplicates).toBe(0);
    const push = await onSecond!.next(
      (m) => m.type === "tool_data" && !m.snapshot && m.data[0]?.tool_id === tool,
    );
    expect(push.data[0]).toMatchObject({ machine: second, tool_offset: 7 });
    expect(await onFirst!.next((m) => m.type === "tool_data" && !m.snapshot)).toMatchObject({
      deleted: [tool],
      data: [],
    });
  });

  it("does not push or keep a sample committed before its machine was deleted and published after", async () => {
    const machine = (await createMachine(f.t)).machine_id as number;
    const x = (await createAxis(f.t, machine, { axis_name: "X" })).axis_id as number;
    const tool = (
      await createTool(f.t, f.machines[0]!, { update_timestamp: "2020-01-01T00:00:00Z" })
    ).tool_id as number;
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine, f.machines[1]], axes: ["X"] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    const other = await otherSession(f.t.database);
    try {
      const { first, second } = await sampleBehindHeldFlush(f, other, tool, machine, x);
      await rest("DELETE", `/data/machines/${machine}/`);
      // The feed has loaded the catalog without the machine before the sample is published.
      const machines = await client.ask({ type: "get_machine_data" }, "machine_data");
      expect(machines.data.map((row: Message) => row.machine_id)).not.toContain(machine);
      await other.query("commit");
      await Promise.all([first, second]);
    } finally {
      await other.query("rollback").catch(() => {});
      await other.end();
    }
    // Data committed after it comes after anything it pushed.
    await ingestAxes(f, 67, [f.machines[1]!], ["X"]);
    await client.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 67);
    const rowsOfX = pushes(client).flatMap((m) => m.data.filter((row: Message) => row.axis === x));
    expect(rowsOfX).toEqual([]);
    // Nor is it kept as a latest value, to come back with a machine made again under that id.
    expect(f.t.services.latest.axes.has(x)).toBe(false);
  });

  it("do not keep a sample committed before its machine was deleted and published after, with no one subscribed", async () => {
    const quiet = await fixture();
    const other = await otherSession(quiet.t.database);
    try {
      const machine = (await createMachine(quiet.t)).machine_id as number;
      const x = (await createAxis(quiet.t, machine, { axis_name: "X" })).axis_id as number;
      const tool = (
        await createTool(quiet.t, quiet.machines[0]!, { update_timestamp: "2020-01-01T00:00:00Z" })
      ).tool_id as number;
      // Published only after the machine is deleted and its values read again.
      const { first, second } = await sampleBehindHeldFlush(quiet, other, tool, machine, x);
      const remove = await quiet.t.inject({
        method: "DELETE",
        url: `/data/machines/${machine}/`,
        headers: quiet.t.adminAuth,
      });
      expect(remove.statusCode).toBe(204);
      await other.query("commit");
      await Promise.all([first, second]);
      expect(quiet.t.services.live.stats().connections).toBe(0);
      // The machine made again under its id does not show the deleted axis's sample.
      const again = await quiet.t.inject({
        method: "POST",
        url: "/data/machines/",
        headers: quiet.t.adminAuth,
        payload: { machine_id: machine, machine_name: "made again", tool_capacity: 4 },
      });
      expect(again.statusCode).toBe(201);
      await until(() => !quiet.t.services.latest.axes.has(x));
      const client = track((await signedIn(quiet)).client);
      const answer = await client.ask({ type: "get_axis_data" }, "axis_data");
      expect(answer.data.filter((row: Message) => row.machine_id === machine)).toEqual([]);
    } finally {
      await other.query("rollback").catch(() => {});
      await other.end();
      await quiet.t.close();
    }
  });

  it("do not bring back a tool deleted meanwhile", async () => {
    const machine = f.machines[0]!;
    const tool = (await createTool(f.t, machine, { update_timestamp: "2020-01-01T00:00:00Z" }))
      .tool_id as number;
    const client = track((await signedIn(f)).client);
    client.send({ type: "subscribe", machines: [machine] });
    await client.next((m) => m.type === "tool_data" && m.snapshot);
    const result = await reportDuring(tool, 9, "delete from tool where tool_id = $1", [tool]);
    // Validated against the tool, stored as nothing: a report of a tool that is not there.
    expect(result.duplicates).toBe(1);
    const answer = await client.ask({ type: "get_tool_data" }, "tool_data");
    expect(answer.data.find((row: Message) => row.tool_id === tool)?.tool_offset).not.toBe(9);
    // Data committed after it comes after anything it pushed: nothing of the tool came.
    await ingestAxes(f, 5, [machine], ["X"]);
    await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(pushes(client, "tool_data")).toEqual([]);
  });
});

describe("while a tick gathers", () => {
  let slowTicks: Fixture;
  beforeAll(async () => {
    slowTicks = await fixture({ tickMs: 300 });
  });
  afterAll(() => slowTicks.t.close());

  it("a snapshot covers the rows committed and not yet pushed, and no push repeats them", async () => {
    const control = track((await signedIn(slowTicks)).client);
    control.send({ type: "subscribe" });
    await control.next((m) => m.type === "axis_data" && m.snapshot);
    await ingestAxes(slowTicks, 500);
    // Committed, and gathering for 300 ms: the newcomer's snapshot shows it already.
    const newcomer = track((await signedIn(slowTicks)).client);
    newcomer.send({ type: "subscribe" });
    const snapshot = await newcomer.next((m) => m.type === "axis_data" && m.snapshot);
    expect(snapshot.data.map((row: Message) => row.actual_position)).toContain(500);
    await control.next((m) => !m.snapshot && m.data?.[0]?.actual_position === 500);
    await newcomer.ask({ type: "get_machine_data" }, "machine_data");
    expect(pushes(newcomer).flatMap((m) => m.data)).toEqual([]);
    await ingestAxes(slowTicks, 501);
    const next = await newcomer.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(next.seq).toBeGreaterThan(snapshot.seq);
    expect(new Set(next.data.map((row: Message) => row.actual_position))).toEqual(new Set([501]));
  });

  it("get_axis_data answers what was committed, before the tick pushes it", async () => {
    const client = track((await signedIn(slowTicks)).client);
    const x = slowTicks.axes.get(`${slowTicks.machines[1]}:X`)!;
    const valueOfX = async () =>
      (await client.ask({ type: "get_axis_data" }, "axis_data")).data.find(
        (row: Message) => row.axis === x,
      )?.actual_position;
    await ingestAxes(slowTicks, 700, [slowTicks.machines[1]!], ["X"]);
    expect(await valueOfX()).toBe(700);
    // Asked again within the same tick, after another commit.
    await ingestAxes(slowTicks, 701, [slowTicks.machines[1]!], ["X"]);
    expect(await valueOfX()).toBe(701);
  });

  it("pushes a CRUD correction of a sample still waiting in the tick, not the sample", async () => {
    const machine = slowTicks.machines[0]!;
    const x = slowTicks.axes.get(`${machine}:X`)!;
    const client = track((await signedIn(slowTicks)).client);
    client.send({ type: "subscribe", machines: [machine], axes: ["X"] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    await ingestAxes(slowTicks, 600, [machine], ["X"]);
    // Gathering for 300 ms: corrected before its tick goes out.
    const [stored] = (
      await slowTicks.t.inject({
        method: "GET",
        url: `/data/axises/?axis=${x}&ordering=-update_timestamp&limit=1`,
        headers: slowTicks.t.adminAuth,
      })
    ).json();
    expect(stored.actual_position).toBe(600);
    const patched = await slowTicks.t.inject({
      method: "PATCH",
      url: `/data/axises/${stored.axis_data_id}/`,
      headers: slowTicks.t.adminAuth,
      payload: { actual_position: 601 },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    const push = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(push.data.map((row: Message) => row.actual_position)).toEqual([601]);
  });

  it("pushes a machine deleted while its data gathers as deleted, without the data", async () => {
    const machine = (await createMachine(slowTicks.t)).machine_id as number;
    const axis = (await createAxis(slowTicks.t, machine, { axis_name: "X" })).axis_id as number;
    const client = track((await signedIn(slowTicks)).client);
    client.send({ type: "subscribe", machines: [machine] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    await ingestAxes(slowTicks, 1, [machine], ["X"]);
    await client.next((m) => m.type === "axis_data" && !m.snapshot);
    // Within one 300 ms tick: a sample, then the machine deleted.
    await ingestAxes(slowTicks, 2, [machine], ["X"]);
    const deleted = await slowTicks.t.inject({
      method: "DELETE",
      url: `/data/machines/${machine}/`,
      headers: slowTicks.t.adminAuth,
    });
    expect(deleted.statusCode).toBe(204);
    const push = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(push).toMatchObject({ deleted: [axis], data: [] });
  });

  it("tells a tool's first machine it left when it moves and is deleted within one tick", async () => {
    const [first, second] = slowTicks.machines as [number, number];
    const tool = (await createTool(slowTicks.t, first)).tool_id as number;
    const client = track((await signedIn(slowTicks)).client);
    client.send({ type: "subscribe", machines: [first] });
    const snapshot = await client.next((m) => m.type === "tool_data" && m.snapshot);
    expect(snapshot.data.map((row: Message) => row.tool_id)).toContain(tool);
    const send = async (method: "PATCH" | "DELETE", payload?: object) => {
      const answer = await slowTicks.t.inject({
        method,
        url: `/data/tools/${tool}/`,
        headers: slowTicks.t.adminAuth,
        ...(payload ? { payload } : {}),
      });
      expect(answer.statusCode, answer.body).toBeLessThan(300);
    };
    await send("PATCH", { machine: second });
    await send("DELETE");
    const push = await client.next((m) => m.type === "tool_data" && !m.snapshot);
    expect(push).toMatchObject({ deleted: [tool], data: [] });
  });

  it("pushes a series deleted and given a new value in one tick as that value, not as deleted", async () => {
    const machine = slowTicks.machines[1]!;
    const axis = (await createAxis(slowTicks.t, machine, { axis_name: "A" })).axis_id as number;
    const client = track((await signedIn(slowTicks)).client);
    client.send({ type: "subscribe", machines: [machine], axes: [axis] });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    const only = await createAxisData(slowTicks.t, axis, { update_timestamp: at() });
    await client.next((m) => m.type === "axis_data" && !m.snapshot);
    // Within one 300 ms tick: the only sample deleted, then a new one.
    const deleted = await slowTicks.t.inject({
      method: "DELETE",
      url: `/data/axises/${only.axis_data_id}/`,
      headers: slowTicks.t.adminAuth,
    });
    expect(deleted.statusCode).toBe(204);
    await createAxisData(slowTicks.t, axis, { actual_position: 77, update_timestamp: at() });
    const push = await client.next((m) => m.type === "axis_data" && !m.snapshot);
    expect(push.deleted).toBeUndefined();
    expect(push.data).toEqual([expect.objectContaining({ axis, actual_position: 77 })]);
  });
});

describe("acknowledged windows", () => {
  const axisPush = (m: Message) => m.type === "axis_data" && !m.snapshot;

  it("hold a subscriber at `window` unacknowledged pushes, then send it the newest values", async () => {
    const client = track((await signedIn(f)).client);
    // Fields of their own, so these sockets form groups of their own.
    const only = { fields: ["actual_position"] };
    client.send({ type: "subscribe", machines: [f.machines[0]], axes: ["X"], window: 1, ...only });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    await ingestAxes(f, 200);
    const first = await client.next(axisPush);
    expect(first.data.map((r: Message) => r.actual_position)).toEqual([200]);
    for (let value = 201; value <= 204; value++) await ingestAxes(f, value);
    // Every push is on the wire by the time its ingest resolves; none came.
    await sleep(200);
    expect(pushes(client)).toHaveLength(1);
    client.send({ type: "ack", seq: first.seq });
    const caughtUp = await client.next(axisPush);
    expect(caughtUp.data.map((r: Message) => r.actual_position)).toEqual([204]);
    expect(caughtUp.seq).toBeGreaterThan(first.seq);
    await sleep(100);
    expect(pushes(client)).toHaveLength(2);
    // Acknowledging as it goes, it gets every push.
    client.send({ type: "ack", seq: caughtUp.seq });
    for (let value = 205; value <= 207; value++) {
      await ingestAxes(f, value);
      const push = await client.next(axisPush);
      expect(push.data.map((r: Message) => r.actual_position)).toEqual([value]);
      client.send({ type: "ack", seq: push.seq });
    }
  });

  it("let `window` pushes go unacknowledged, and no more", async () => {
    const client = track((await signedIn(f)).client);
    const only = { fields: ["actual_position"] };
    client.send({ type: "subscribe", machines: [f.machines[1]], axes: ["Y"], window: 3, ...only });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    for (let value = 300; value < 306; value++) await ingestAxes(f, value);
    await sleep(200);
    expect(pushes(client).map((m) => m.data[0].actual_position)).toEqual([300, 301, 302]);
    // Acknowledging the first two frees two places: the newest value fills one of them.
    client.send({ type: "ack", seq: pushes(client)[1]!.seq });
    await until(() => pushes(client).length === 4);
    await sleep(100);
    expect(pushes(client).map((m) => m.data[0].actual_position)).toEqual([300, 301, 302, 305]);
  });
});

describe("encodings", () => {
  it.each(liveEncodings)(
    "%s: snapshot and pushes carry exactly the JSON rows",
    async (encoding) => {
      const [m0] = f.machines as [number];
      const reference = track((await signedIn(f, ["Admin"])).client);
      const { client } = await signedIn(f, ["Admin"]);
      track(client);
      const filter = { type: "subscribe", machines: [m0] };
      reference.send(filter);
      client.send({ ...filter, encoding });
      const referenceSnapshot = await reference.next((m) => m.type === "axis_data" && m.snapshot);
      const snapshot = await client.next((m) => m.type === "axis_data" && m.snapshot);
      expect(rowsOf(snapshot)).toEqual(referenceSnapshot.data);
      // Values JSON and float32 would round differently, and a tool and its usage.
      const value = 0.1 + 0.2 + Math.random();
      await ingestAxes(f, value, [m0]);
      await f.t.services.ingest.ingest({
        tool_data: [{ tool_id: f.tool, tool_offset: -1e-7 / 3, feedrate: 1234.5, timestamp: at() }],
        tool_usage: [{ machine_id: m0, tool_in_use: f.tool, timestamp: at() }],
      });
      for (const type of ["axis_data", "tool_data", "tool_usage"]) {
        const expected = await reference.next((m) => m.type === type && !m.snapshot);
        const push = await client.next((m) => m.type === type && !m.snapshot);
        expect(push.seq).toBe(expected.seq);
        expect(rowsOf(push)).toEqual(expected.data);
        expect("data" in push).toBe(!encoding.endsWith("-columns"));
      }
      expect(rowsOf(pushes(client)[0]!).find((row) => row.axis_name === "X")).toEqual({
        axis: f.axes.get(`${m0}:X`),
        machine_id: m0,
        machine_name: `Machine ${m0}`,
        axis_name: "X",
        actual_position: value,
        target_position: value + 1,
        distance_to_go: value + 1 - value,
        homed: true,
        acceleration: 1,
        velocity: 10,
        update_timestamp: expect.any(String),
      });
      // Rows come in binary frames for MessagePack; every other answer stays JSON text.
      const binary = encoding.startsWith("msgpack");
      client.messages.forEach((message, i) => {
        expect(client.binary[i]).toBe(binary && message.seq !== undefined);
      });
      expect(reference.binary.every((isBinary) => !isBinary)).toBe(true);
      expect((await client.ask({ type: "get_machine_data" }, "machine_data")).data.length).toBe(
        (await reference.ask({ type: "get_machine_data" }, "machine_data")).data.length,
      );
    },
  );

  it("group subscribers by filter and encoding, and share bytes within a group", async () => {
    const filter = { type: "subscribe", machines: [f.machines[1]], axes: ["Y"] };
    const before = f.t.services.live.stats().groups;
    const clients: LiveTestClient[] = [];
    for (const encoding of ["msgpack-columns", "msgpack-columns", "json", undefined]) {
      const client = track((await signedIn(f)).client);
      client.send(encoding ? { ...filter, encoding } : filter);
      await client.next((m) => m.snapshot);
      clients.push(client);
    }
    expect(f.t.services.live.stats().groups).toBe(before + 2);
    await ingestAxes(f, 61, [f.machines[1]!], ["Y"]);
    const [a, b, c, d] = await Promise.all(clients.map((c) => c.next((m) => !m.snapshot)));
    expect(a).toEqual(b);
    expect(c).toEqual(d);
    expect(rowsOf(a!)).toEqual(c!.data);
  });

  it("apply to conflated pushes under max_rate_hz and to resumed ticks", async () => {
    const [m0] = f.machines as [number];
    const { client } = await signedIn(f);
    track(client);
    client.send({
      type: "subscribe",
      machines: [m0],
      axes: ["Z"],
      max_rate_hz: 2,
      encoding: "json-columns",
    });
    const snapshot = await client.next((m) => m.snapshot);
    for (let value = 70; value < 75; value++) await ingestAxes(f, value, [m0], ["Z"]);
    await until(() => pushes(client).some((m) => rowsOf(m).some((r) => r.actual_position === 74)));
    expect(pushes(client).every((m) => m.columns && !m.data)).toBe(true);
    client.close();
    const again = track((await signedIn(f)).client);
    again.send({
      type: "subscribe",
      machines: [m0],
      axes: ["Z"],
      since_seq: snapshot.seq,
      encoding: "msgpack",
    });
    await again.next((m) => m.type === "subscribed");
    expect(pushes(again).map((m) => m.data[0].actual_position)).toEqual([70, 71, 72, 73, 74]);
    expect(again.binary.filter(Boolean).length).toBe(5);
  });

  it("refuses any other encoding with an error naming the choices, and carries on", async () => {
    const { client } = await signedIn(f);
    track(client);
    const bad = [
      "xml",
      "",
      "JSON",
      "json ",
      "msgpack-columns\u0000",
      "__proto__",
      "x".repeat(60_000),
      5,
      -1,
      true,
      null,
      ["json"],
      { json: true },
    ];
    for (const encoding of bad) {
      client.send({ type: "subscribe", encoding });
      const error = await client.next();
      expect(error).toEqual({
        type: "error",
        message:
          'subscribe: encoding: must be one of "json", "json-columns", "msgpack", "msgpack-columns".',
      });
    }
    expect(f.t.services.live.stats().connections).toBeGreaterThan(0);
    client.send({ type: "subscribe", machines: [f.machines[0]], encoding: "msgpack" });
    expect((await client.next()).snapshot).toBe(true);
    expect(client.binary.at(-1)).toBe(true);
  });
});

describe("resume", () => {
  it("replays what a reconnecting client missed", async () => {
    const first = await signedIn(f);
    track(first.client);
    first.client.send({ type: "subscribe", machines: [f.machines[0]], axes: ["Y"] });
    const snapshot = await first.client.next((m) => m.snapshot);
    first.client.close();
    await ingestAxes(f, 21);
    await ingestAxes(f, 22);
    const again = track((await signedIn(f)).client);
    again.send({
      type: "subscribe",
      machines: [f.machines[0]],
      axes: ["Y"],
      since_seq: snapshot.seq,
    });
    const resumed = await again.next((m) => m.type === "subscribed");
    expect(resumed.resumed).toBe(true);
    const values = pushes(again).map((m) => m.data[0].actual_position);
    expect(values).toEqual([21, 22]);
    expect(again.messages.some((m) => m.snapshot)).toBe(false);
  });

  it("sends a snapshot flagged reset when the client is too far behind", async () => {
    const { client } = await signedIn(f);
    track(client);
    for (let i = 0; i < 10; i++) await ingestAxes(f, 30 + i, f.machines.slice(1), ["Z"]);
    for (const since of [0, 10 ** 9]) {
      client.send({ type: "subscribe", axes: ["Z"], machines: [f.machines[1]], since_seq: since });
      const reset = await client.next((m) => m.type === "axis_data" && m.snapshot);
      expect(reset.reset).toBe(true);
      expect(reset.data).toEqual([expect.objectContaining({ actual_position: 39 })]);
    }
  });

  it("sends a snapshot flagged reset instead of replaying more than maxReplayRows", async () => {
    // Six axes a tick: two ticks are 12 rows (the bound here), three are 18.
    const before = f.t.services.live.stats().seq;
    for (const value of [80, 81, 82]) await ingestAxes(f, value);
    await until(() => f.t.services.live.stats().seq === before + 3);
    const replayed = track((await signedIn(f)).client);
    // The fixture's machines only: other tests leave machines of their own.
    replayed.send({ type: "subscribe", machines: f.machines, since_seq: before + 1 });
    expect((await replayed.next((m) => m.type === "subscribed")).resumed).toBe(true);
    expect(pushes(replayed).map((m) => m.data.length)).toEqual([6, 6]);
    const reset = track((await signedIn(f)).client);
    reset.send({ type: "subscribe", machines: f.machines, since_seq: before });
    const snapshot = await reset.next((m) => m.type === "axis_data" && m.snapshot);
    expect(snapshot.reset).toBe(true);
    expect(snapshot.data.map((row: Message) => row.actual_position)).toEqual(Array(6).fill(82));
  });

  it("sends a reset to a client resuming from another run, however many ticks this one made", async () => {
    const first = await signedIn(f);
    track(first.client);
    first.client.send({ type: "subscribe" });
    const earlier = (await first.client.next((m) => m.type === "axis_data" && m.snapshot)).seq;
    const restarted = await fixture({ ringTicks: 100_000, ringRows: 10_000_000 });
    try {
      const client = track((await signedIn(restarted)).client);
      client.send({ type: "subscribe" });
      const start = (await client.next((m) => m.type === "axis_data" && m.snapshot)).seq;
      // Before sequence numbers carried the run, a new run reused an old run's numbers.
      for (let i = 0; i < Math.max(1, earlier - start + 1); i++) await ingestAxes(restarted, 90);
      const again = track((await signedIn(restarted)).client);
      again.send({ type: "subscribe", since_seq: earlier });
      const snapshot = await again.next((m) => m.type === "axis_data" && m.snapshot);
      expect(snapshot.reset).toBe(true);
      expect(start).toBeGreaterThan(earlier);
    } finally {
      await restarted.t.close();
    }
  });
});

describe("bad input", () => {
  it("answers each bad message with an error and carries on, other clients unaffected", async () => {
    const watcher = track((await signedIn(f)).client);
    watcher.send({ type: "subscribe", machines: [f.machines[0]], axes: ["X"] });
    await watcher.next((m) => m.snapshot);
    const { client } = await signedIn(f);
    track(client);
    const bad: [unknown, RegExp][] = [
      ["{not json", /Invalid JSON/],
      ["[1,2]", /JSON object/],
      [{ kind: "subscribe" }, /string type/],
      [{ type: "launch_missiles" }, /Unknown message type "launch_missiles"/],
      [{ type: "subscribe", machines: "1" }, /subscribe: machines/],
      [{ type: "subscribe", machines: [1.5] }, /subscribe: machines\.0/],
      [
        { type: "subscribe", fields: ["password"] },
        /subscribe: fields\.0: must be one of "axis", "machine_id", /,
      ],
      [{ type: "subscribe", fields: [5] }, /subscribe: fields\.0: Expected union value/],
      [{ type: "subscribe", max_rate_hz: "fast" }, /subscribe: max_rate_hz/],
      [{ type: "subscribe", since_seq: -1 }, /subscribe: since_seq/],
      [{ type: "authenticate", token: 5 }, /authenticate: token/],
      [{ type: "subscribe", window: 0 }, /subscribe: window/],
      [{ type: "subscribe", window: 1001 }, /subscribe: window/],
      [{ type: "subscribe", window: 1.5 }, /subscribe: window/],
      [{ type: "subscribe", window: "2" }, /subscribe: window/],
      [{ type: "ack" }, /ack: seq/],
      [{ type: "ack", seq: -1 }, /ack: seq/],
      [{ type: "ack", seq: "1" }, /ack: seq/],
      [{ type: "ack", seq: 1 }, /only a subscription with a window/],
    ];
    for (const [message, expected] of bad) {
      client.send(message);
      const error = await client.next();
      expect(error.type).toBe("error");
      expect(error.message).toMatch(expected);
    }
    client.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    expect((await client.next()).message).toMatch(/text frames/);
    await ingestAxes(f, 50);
    expect((await watcher.next((m) => !m.snapshot)).data[0].actual_position).toBe(50);
    expect((await client.ask({ type: "get_machine_data" }, "machine_data")).type).toBe(
      "machine_data",
    );
  });

  it("closes 1009 on a message above the maximum payload: one frame, a huge one, or fragments", async () => {
    const senders: ((client: LiveTestClient) => void)[] = [
      (client) => client.send({ type: "subscribe", pad: "x".repeat(70 * 1024) }),
      (client) => client.ws.send(Buffer.alloc(10 * 1024 * 1024)),
      (client) => {
        for (let i = 0; i < 16; i++) client.ws.send("x".repeat(8 * 1024), { fin: i === 15 });
      },
    ];
    for (const send of senders) {
      const { client } = await signedIn(f);
      track(client);
      send(client);
      // The close handshake completes, so the client learns why, even while it is still sending.
      expect((await client.closedWith()).code).toBe(1009);
    }
    const other = track((await signedIn(f)).client);
    expect((await other.ask({ type: "get_machine_data" }, "machine_data")).type).toBe(
      "machine_data",
    );
  });

  it("closes 1007 on a text frame that is not UTF-8, as RFC 6455 requires", async () => {
    const { client } = await signedIn(f);
    track(client);
    client.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
    expect((await client.closedWith()).code).toBe(1007);
  });

  it("answers a burst of small requests sent back to back, every one", async () => {
    const { client } = await signedIn(f);
    track(client);
    for (let i = 0; i < 60; i++) client.send({ type: "get_machine_data" });
    await until(() => client.messages.filter((m) => m.type === "machine_data").length === 60);
    expect(client.messages.some((m) => m.type === "error")).toBe(false);
  });

  it("rate-limits a flood of subscribe messages", async () => {
    const { client } = await signedIn(f);
    track(client);
    for (let i = 0; i < 40; i++) client.send({ type: "subscribe", machines: [f.machines[0]] });
    await until(() => client.messages.some((m) => /Too many subscribe/.test(m.message ?? "")));
    expect(f.t.services.live.stats().connections).toBeGreaterThan(0);
    await sleep(1100);
    client.send({ type: "subscribe", machines: [f.machines[1]] });
    await until(() =>
      client.messages.some(
        (m) => m.snapshot && m.data.some((r: Message) => r.machine_id === f.machines[1]),
      ),
    );
  });

  it("rate-limits a flood of any message", async () => {
    const { client } = await signedIn(f);
    track(client);
    for (let i = 0; i < 300; i++) client.send({ type: "get_machine_data" });
    await until(() => client.messages.some((m) => /Too many messages/.test(m.message ?? "")));
    expect(client.messages.filter((m) => m.type === "machine_data").length).toBeLessThan(300);
  });
});

describe("slow and dead peers", () => {
  let slow: Fixture;
  beforeAll(async () => {
    slow = await fixture({
      // The production mark: a reader sharing this process's event loop with the server never
      // reaches it, while the paused client's flood of answers does.
      highWaterBytes: 256 * 1024,
      maxBufferedBytes: 1024 * 1024 * 1024,
      stalledDropMs: 120_000,
      messagesPerSecond: 1_000_000,
      messageBurst: 1_000_000,
    });
  });
  afterAll(() => slow.t.close());
  const seen: string[] = [];

  it.each(["json", "msgpack-columns"] as const)(
    "conflates a paused reader to the newest values while others get every one (%s)",
    async (encoding) => {
      const reader = track((await signedIn(slow)).client);
      const paused = track((await signedIn(slow)).client);
      for (const client of [reader, paused]) {
        client.send({ type: "subscribe", encoding });
        await client.next((m) => m.type === "axis_data" && m.snapshot);
      }
      await ingestAxes(slow, 0);
      await paused.next((m) => m.type === "axis_data" && !m.snapshot);
      const socket = (paused.ws as unknown as { _socket: { pause(): void; resume(): void } })
        ._socket;
      socket.pause();
      // Fill the kernel's buffers and then the server's, with answers it must send anyway.
      for (let i = 0; i < 5000 && slow.t.services.live.stats().backlogged === 0; i++) {
        for (let j = 0; j < 200; j++) paused.send({ type: "get_axis_data" });
        await sleep(10);
      }
      expect(slow.t.services.live.stats().backlogged).toBe(1);
      const base = 100 * seen.length;
      seen.push(encoding);
      for (let value = 1; value <= 10; value++) await ingestAxes(slow, base + value);
      await until(() =>
        pushes(reader).some((m) => rowsOf(m).some((r) => r.actual_position === base + 10)),
      );
      expect(slow.t.services.live.stats().held).toBe(1);
      socket.resume();
      const x = slow.axes.get(`${slow.machines[0]}:X`);
      const values = (client: LiveTestClient) =>
        pushes(client).flatMap((m) =>
          rowsOf(m)
            .filter((r) => r.axis === x)
            .map((r) => r.actual_position),
        );
      await until(() => values(paused).includes(base + 10), 60_000);
      expect(values(paused)[0]).toBe(0);
      expect(values(paused).length).toBeLessThan(11);
      expect(values(paused).at(-1)).toBe(base + 10);
      // Every value the paused reader got is one of those committed, newest last, none repeated.
      expect(new Set(values(paused)).size).toBe(values(paused).length);
      expect(values(reader)).toEqual([0, ...Array.from({ length: 10 }, (_, i) => base + i + 1)]);
    },
    120_000,
  );
});

describe("a client that stops reading", () => {
  let stalled: Fixture;
  beforeAll(async () => {
    stalled = await fixture({
      // Pings would find it first: this is the stall bound alone, and no byte bound either.
      heartbeatMs: 600_000,
      highWaterBytes: 16 * 1024,
      maxBufferedBytes: 1024 * 1024 * 1024,
      stalledDropMs: 1000,
      messagesPerSecond: 1_000_000,
      messageBurst: 1_000_000,
    });
  });
  afterAll(() => stalled.t.close());

  it("is dropped once it has been backed up for stalledDropMs, not before", async () => {
    const client = track((await signedIn(stalled)).client);
    await ingestAxes(stalled, 1);
    (client.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    for (let i = 0; i < 5000 && stalled.t.services.live.stats().backlogged === 0; i++) {
      for (let j = 0; j < 200; j++) client.send({ type: "get_axis_data" });
      await sleep(10);
    }
    expect(stalled.t.services.live.stats().backlogged).toBe(1);
    const backedUp = performance.now();
    await until(() => stalled.t.services.live.stats().connections === 0, 20_000);
    // It crossed the mark at most a flood round and a sweep before it was seen to.
    expect(performance.now() - backedUp).toBeGreaterThan(1000 - 10 - 25 - 15);
  }, 60_000);
});

describe.runIf(testDatabaseKind() === "postgres")("a recheck the database cannot answer", () => {
  it("is tried again until it is: a token revoked meanwhile still closes its socket", async () => {
    const { client, token } = await signedIn(f);
    track(client);
    client.send({ type: "subscribe" });
    await client.next((m) => m.type === "axis_data" && m.snapshot);
    // Every connection of Spindle's pool is taken, so the recheck's lookup times out (5 s).
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    let held = 0;
    const holds = Array.from({ length: 4 }, () =>
      f.t.services.db.transaction(async () => {
        held += 1;
        await gate;
      }),
    );
    await until(() => held === 4);
    const other = await otherSession(f.t.database);
    try {
      await other.query("update oauth_token set revoked_at = now() where token_hash = $1", [
        tokenHash(token),
      ]);
      await sleep(6000);
      expect(client.closed).toBeUndefined();
    } finally {
      open();
      await Promise.all(holds);
      await other.end();
    }
    expect(await client.closedWith()).toEqual({ code: 4401, reason: "Token revoked or expired" });
  }, 30_000);
});

describe.runIf(testDatabaseKind() === "postgres")("messages waiting for a token check", () => {
  it("are held up to 1 MiB; more are refused at once, and the held ones answered in order", async () => {
    const auth = await f.t.userAuth(["Operator"]);
    const other = await otherSession(f.t.database);
    try {
      await other.query("begin");
      await other.query("lock table oauth_token in access exclusive mode");
      const client = track(await LiveTestClient.open(f.url, { authorization: auth.authorization }));
      await blockedBy(other, "%oauth_token%");
      // 65,000 bytes each (JSON allows the whitespace): 16 fit in 1 MiB, the 17th does not.
      const ask = JSON.stringify({ type: "get_machine_data" });
      for (let i = 0; i < 20; i++) client.send(ask.padEnd(65_000, " "));
      await until(() => client.messages.length === 4);
      expect(client.messages).toEqual(
        Array(4).fill({ type: "error", message: "Not authenticated" }),
      );
      await other.query("rollback");
      await until(() => client.messages.length === 4 + 1 + 16);
      expect(client.messages[4]).toMatchObject({ type: "authenticated" });
      expect(client.messages.slice(5).map((m) => m.type)).toEqual(Array(16).fill("machine_data"));
    } finally {
      await other.end();
    }
  });
});

describe("timers", () => {
  let timed: Fixture;
  beforeAll(async () => {
    timed = await fixture({
      heartbeatMs: 500,
      highWaterBytes: 16 * 1024,
      stalledDropMs: 1000,
      messagesPerSecond: 1_000_000,
      messageBurst: 1_000_000,
    });
  });
  afterAll(() => timed.t.close());

  it("drops a peer that stops answering pings", async () => {
    const auth = await timed.t.userAuth(["Operator"]);
    const { port } = new URL(timed.url);
    const raw = connect(Number(port), "127.0.0.1");
    let closed = false;
    raw.on("close", () => {
      closed = true;
    });
    raw.on("error", () => {});
    raw.on("data", () => {});
    raw.write(
      [
        "GET /ws/machine_data/ HTTP/1.1",
        `Host: 127.0.0.1:${port}`,
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        `Authorization: ${auth.authorization}`,
        "",
        "",
      ].join("\r\n"),
    );
    await until(() => timed.t.services.live.stats().connections === 1);
    await until(() => closed, 10_000);
    expect(timed.t.services.live.stats().connections).toBe(0);
  });

  it("closes 4401 once the token expires", async () => {
    const { client } = await signedIn(timed);
    track(client);
    timed.t.clock.advance(36_001_000);
    expect(await client.closedWith()).toEqual({ code: 4401, reason: "Token expired" });
  });
});

describe("a token that expires", () => {
  it("closes its socket at once, not at the next heartbeat", async () => {
    const quiet = await fixture({ heartbeatMs: 3_600_000 });
    try {
      const { client } = await signedIn(quiet);
      track(client);
      client.send({ type: "subscribe" });
      await client.next((m) => m.type === "axis_data" && m.snapshot);
      quiet.t.clock.advance(36_001_000);
      expect(await client.closedWith()).toEqual({ code: 4401, reason: "Token expired" });
    } finally {
      await quiet.t.close();
    }
  });
});
