import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp, testPassword, uniqueName } from "./helpers/app.ts";
import {
  createAxis,
  createAxisData,
  createMachine,
  createTool,
  createToolUsage,
  nextMachineId,
  snapshot,
} from "./helpers/factories.ts";

/**
 * The contract's default permission matrix, cell by cell: every group (and a user in no group,
 * and one in two groups) against every action on every resource. Allowed cells succeed; denied
 * ones are exactly 403 and change nothing.
 */

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

const forbidden = { detail: "You do not have permission to perform this action." };

type Group = "Admin" | "Manager" | "Supervisor" | "Operator";
type Action = "view" | "add" | "change" | "delete";
const everyone: Group[] = ["Admin", "Manager", "Supervisor", "Operator"];

/** The contract's table, as written there. */
const catalog: Record<Action, Group[]> = {
  view: everyone,
  add: ["Admin", "Manager", "Supervisor"],
  change: ["Admin", "Manager"],
  delete: ["Admin"],
};
const toolUsage: Record<Action, Group[]> = {
  view: everyone,
  add: ["Admin", "Operator"],
  change: ["Admin", "Manager", "Operator"],
  delete: ["Admin", "Supervisor"],
};

interface Resource {
  path: string;
  allowed: Record<Action, Group[]>;
  /** Creates a row (as an Admin) and returns its id. */
  row(): Promise<number>;
  /** A valid body for POST and PUT. */
  body(): Promise<Record<string, unknown>>;
  /** A valid PATCH body. */
  patch: Record<string, unknown>;
}

let sampleSecond = 0;
/** Distinct sample times, so no two samples of an axis collide. */
const sampleTime = () => new Date(t.clock.now().getTime() - ++sampleSecond * 1000).toISOString();
const newMachine = async () => (await createMachine(t)).machine_id;
const newAxis = async () => (await createAxis(t, await newMachine())).axis_id;

const resources: Record<string, Resource> = {
  machines: {
    path: "/data/machines/",
    allowed: catalog,
    row: newMachine,
    body: async () => ({ machine_id: nextMachineId(), machine_name: "M", tool_capacity: 1 }),
    patch: { tool_capacity: 2 },
  },
  tools: {
    path: "/data/tools/",
    allowed: catalog,
    row: async () => (await createTool(t, await newMachine())).tool_id,
    body: async () => ({ machine: await newMachine(), tool_offset: 1, feedrate: 100 }),
    patch: { feedrate: 50 },
  },
  axes: {
    path: "/data/axes/",
    allowed: catalog,
    row: newAxis,
    body: async () => ({
      machine: await newMachine(),
      axis_name: "Y",
      max_acceleration: 1,
      max_velocity: 1,
    }),
    patch: { max_velocity: 2 },
  },
  "axis data": {
    path: "/data/axises/",
    allowed: catalog,
    row: async () =>
      (await createAxisData(t, await newAxis(), { update_timestamp: sampleTime() })).axis_data_id,
    body: async () => ({
      axis: await newAxis(),
      actual_position: 1,
      target_position: 2,
      homed: true,
      acceleration: 0,
      velocity: 0,
      update_timestamp: sampleTime(),
    }),
    patch: { velocity: 5 },
  },
  "tool usage": {
    path: "/data/tool-usage/",
    allowed: toolUsage,
    row: async () => {
      const machine = await newMachine();
      const tool = await createTool(t, machine);
      return (await createToolUsage(t, machine, tool.tool_id)).usage_id;
    },
    body: async () => {
      const machine = await newMachine();
      return { machine, tool_in_use: (await createTool(t, machine)).tool_id };
    },
    patch: { update_timestamp: "2026-01-01T00:00:00Z" },
  },
};

/** Each action and the requests that exercise it, with the status that means success. */
const requests: {
  action: Action;
  name: string;
  status: number;
  build(resource: Resource): Promise<Omit<InjectOptions, "headers">>;
}[] = [
  {
    action: "view",
    name: "GET list",
    status: 200,
    build: async (r) => ({ method: "GET", url: r.path }),
  },
  {
    action: "view",
    name: "GET one",
    status: 200,
    build: async (r) => ({ method: "GET", url: `${r.path}${await r.row()}/` }),
  },
  {
    action: "add",
    name: "POST",
    status: 201,
    build: async (r) => ({ method: "POST", url: r.path, payload: await r.body() }),
  },
  {
    action: "change",
    name: "PUT",
    status: 200,
    build: async (r) => {
      const id = await r.row();
      const body = await r.body();
      // A machine's id is its own; PUT must name it unchanged.
      if ("machine_id" in body) body.machine_id = id;
      return { method: "PUT", url: `${r.path}${id}/`, payload: body };
    },
  },
  {
    action: "change",
    name: "PATCH",
    status: 200,
    build: async (r) => ({ method: "PATCH", url: `${r.path}${await r.row()}/`, payload: r.patch }),
  },
  {
    action: "delete",
    name: "DELETE",
    status: 204,
    build: async (r) => ({ method: "DELETE", url: `${r.path}${await r.row()}/` }),
  },
];

/** Who asks: each group alone, two groups at once (OR semantics), and a user in none. */
const callers: { name: string; groups: Group[] }[] = [
  ...everyone.map((group) => ({ name: group, groups: [group] })),
  { name: "Supervisor+Operator", groups: ["Supervisor", "Operator"] },
  { name: "Manager+Operator", groups: ["Manager", "Operator"] },
  { name: "no group (self-registered)", groups: [] },
];

const auth = new Map<string, { authorization: string }>();
beforeAll(async () => {
  for (const caller of callers) {
    const { authorization } = await t.userAuth(caller.groups);
    auth.set(caller.name, { authorization });
  }
  // A user who registered themselves, through the public endpoint, holds no group.
  const username = uniqueName("selfreg");
  const registered = await t.inject({
    method: "POST",
    url: "/register/",
    payload: { username, password: "Another-Good-Passphrase-7" },
  });
  expect(registered.statusCode).toBe(201);
  const token = await t.token({
    grant_type: "password",
    username,
    password: "Another-Good-Passphrase-7",
  });
  expect(token.statusCode).toBe(200);
  auth.set("no group (self-registered)", {
    authorization: `Bearer ${token.json().access_token}`,
  });
});

/** Sends a request that must be refused with exactly the contract's 403, changing nothing. */
async function expectForbidden(request: InjectOptions, extraTables: string[] = []) {
  const state = async () => {
    const parts = [await snapshot(t)];
    for (const table of extraTables) {
      const { rows } = await t.database.db.query(`select * from ${table} order by 1`);
      parts.push(JSON.stringify(rows));
    }
    return parts.join("\n");
  };
  const before = await state();
  const answer = await t.inject(request);
  expect(answer.statusCode, answer.body).toBe(403);
  expect(answer.json()).toEqual(forbidden);
  expect(await state()).toBe(before);
}

describe("machine data: the default matrix", () => {
  const cells = callers.flatMap((caller) =>
    Object.entries(resources).flatMap(([resourceName, resource]) =>
      requests.map((request) => {
        const allowed = caller.groups.some((group) =>
          resource.allowed[request.action].includes(group),
        );
        return {
          label: `${caller.name} ${request.name} ${resourceName} (${request.action}) → ${allowed ? request.status : 403}`,
          caller,
          resource,
          request,
          allowed,
        };
      }),
    ),
  );

  // A loop rather than it.each: vitest cuts $label to 40 characters, and the name is the cell.
  for (const { label, caller, resource, request, allowed } of cells) {
    it(label, async () => {
      const options = { ...(await request.build(resource)), headers: auth.get(caller.name)! };
      if (allowed) {
        const answer = await t.inject(options);
        expect(answer.statusCode, answer.body).toBe(request.status);
      } else {
        await expectForbidden(options);
      }
    });
  }

  it("covers every cell of the contract's table", () => {
    expect(cells.filter((cell) => cell.caller.groups.length === 1)).toHaveLength(4 * 5 * 6);
  });
});

// ------------------------------------------------------------------ administration

interface AdminRequest {
  name: string;
  status: number;
  build(): Promise<Omit<InjectOptions, "headers">>;
}

const newUserId = async () =>
  (await t.services.users.createUser({ username: uniqueName("target"), password: testPassword }))
    .id;
const newGroup = async () => (await t.services.users.createGroup(uniqueName("Crew"))).name;
const newClient = async () => {
  const clientId = uniqueName("client");
  await t.services.oauth.createClient({
    clientId,
    secret: "a-secret-of-enough-length-0123456789",
    grantTypes: ["client_credentials"],
    scopes: ["read"],
  });
  return clientId;
};

const adminRequests: AdminRequest[] = [
  { name: "GET /users/", status: 200, build: async () => ({ method: "GET", url: "/users/" }) },
  {
    name: "GET /users/{id}/",
    status: 200,
    build: async () => ({ method: "GET", url: `/users/${await newUserId()}/` }),
  },
  {
    name: "PATCH /users/{id}/",
    status: 200,
    build: async () => ({
      method: "PATCH",
      url: `/users/${await newUserId()}/`,
      payload: { first_name: "Changed" },
    }),
  },
  {
    name: "DELETE /users/{id}/",
    status: 204,
    build: async () => ({ method: "DELETE", url: `/users/${await newUserId()}/` }),
  },
  { name: "GET /groups/", status: 200, build: async () => ({ method: "GET", url: "/groups/" }) },
  {
    name: "POST /groups/",
    status: 201,
    build: async () => ({
      method: "POST",
      url: "/groups/",
      payload: { name: uniqueName("Crew"), permissions: ["machine.view"] },
    }),
  },
  {
    name: "GET /groups/{name}/",
    status: 200,
    build: async () => ({ method: "GET", url: "/groups/Operator/" }),
  },
  {
    name: "DELETE /groups/{name}/",
    status: 204,
    build: async () => ({ method: "DELETE", url: `/groups/${await newGroup()}/` }),
  },
  {
    name: "PUT /groups/{name}/permissions/",
    status: 200,
    build: async () => ({
      method: "PUT",
      url: `/groups/${await newGroup()}/permissions/`,
      payload: { permissions: ["machine.view", "group.change"] },
    }),
  },
  {
    name: "GET /permissions/",
    status: 200,
    build: async () => ({ method: "GET", url: "/permissions/" }),
  },
  {
    name: "POST /add-user-to-group/",
    status: 200,
    build: async () => {
      const username = uniqueName("member");
      await t.services.users.createUser({ username, password: testPassword });
      return { method: "POST", url: "/add-user-to-group/", payload: { username, group: "Admin" } };
    },
  },
  {
    name: "POST /remove-user-from-group/",
    status: 200,
    build: async () => {
      const username = uniqueName("member");
      await t.services.users.createUser({ username, password: testPassword }, ["Manager"]);
      return {
        method: "POST",
        url: "/remove-user-from-group/",
        payload: { username, group: "Manager" },
      };
    },
  },
  {
    name: "GET /o/clients/",
    status: 200,
    build: async () => ({ method: "GET", url: "/o/clients/" }),
  },
  {
    name: "POST /o/clients/",
    status: 201,
    build: async () => ({
      method: "POST",
      url: "/o/clients/",
      payload: {
        client_id: uniqueName("adapter"),
        grant_types: ["client_credentials"],
        scopes: ["read"],
      },
    }),
  },
  {
    name: "DELETE /o/clients/{client_id}/",
    status: 204,
    build: async () => ({ method: "DELETE", url: `/o/clients/${await newClient()}/` }),
  },
];

describe("users, groups, membership and OAuth2 clients: Admin only", () => {
  const cells = callers.flatMap((caller) =>
    adminRequests.map((request) => ({
      label: `${caller.name} ${request.name} → ${caller.groups.includes("Admin") ? request.status : 403}`,
      caller,
      request,
      allowed: caller.groups.includes("Admin"),
    })),
  );

  for (const { label, caller, request, allowed } of cells) {
    it(label, async () => {
      const options = { ...(await request.build()), headers: auth.get(caller.name)! };
      if (allowed) {
        const answer = await t.inject(options);
        expect(answer.statusCode, answer.body).toBe(request.status);
      } else {
        await expectForbidden(options, ["app_group", "oauth_token"]);
      }
    });
  }
});

// ------------------------------------------------------------------ permissions are data

describe("changing a group's permissions", () => {
  const setPermissions = (group: string, permissions: string[]) =>
    t.inject({
      method: "PUT",
      url: `/groups/${group}/permissions/`,
      headers: t.adminAuth,
      payload: { permissions },
    });
  const machines = (headers: { authorization: string }) =>
    t.inject({ method: "GET", url: "/data/machines/", headers });

  it("takes effect on the next request of a user already signed in", async () => {
    const group = uniqueName("Inspectors");
    const created = await t.inject({
      method: "POST",
      url: "/groups/",
      headers: t.adminAuth,
      payload: { name: group },
    });
    expect(created.statusCode).toBe(201);
    const inspector = await t.userAuth([group]);
    const headers = { authorization: inspector.authorization };
    expect((await machines(headers)).statusCode).toBe(403);

    expect((await setPermissions(group, ["machine.view"])).statusCode).toBe(200);
    expect((await machines(headers)).statusCode).toBe(200);
    // A permission not granted stays refused.
    const machine = await createMachine(t);
    await expectForbidden({
      method: "DELETE",
      url: `/data/machines/${machine.machine_id}/`,
      headers,
    });

    expect((await setPermissions(group, [])).statusCode).toBe(200);
    expect((await machines(headers)).statusCode).toBe(403);
  });

  it("applies to a default group too, and the default can be restored", async () => {
    const operator = auth.get("Operator")!;
    const before = (
      await t.inject({ method: "GET", url: "/groups/Operator/", headers: t.adminAuth })
    ).json().permissions as string[];
    expect(before).toContain("machine.view");
    try {
      const reduced = before.filter((code) => code !== "machine.view");
      expect((await setPermissions("Operator", reduced)).statusCode).toBe(200);
      expect((await machines(operator)).statusCode).toBe(403);
      // The rest of the group's permissions still hold.
      expect(
        (await t.inject({ method: "GET", url: "/data/tool-usage/", headers: operator })).statusCode,
      ).toBe(200);
      // Two groups: the other one's grant is enough (OR semantics).
      expect((await machines(auth.get("Supervisor+Operator")!)).statusCode).toBe(200);
    } finally {
      expect((await setPermissions("Operator", before)).statusCode).toBe(200);
    }
    expect((await machines(operator)).statusCode).toBe(200);
  });

  it("refuses a permission change by anyone but an Admin", async () => {
    for (const caller of callers.filter((c) => !c.groups.includes("Admin"))) {
      await expectForbidden({
        method: "PUT",
        url: "/groups/Operator/permissions/",
        headers: auth.get(caller.name)!,
        payload: { permissions: ["machine.delete"] },
      });
    }
  });
});
