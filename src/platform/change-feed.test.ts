import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../test/helpers/app.ts";
import { createMachine } from "../../test/helpers/factories.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

/** Polls until `check` passes: another writer's NOTIFY arrives asynchronously on PostgreSQL. */
async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

describe("caches invalidated by the change feed", () => {
  it("a machine list reflects this server's own writes at once", async () => {
    const list = async () =>
      (await t.inject({ method: "GET", url: "/data/machines/", headers: t.adminAuth })).json();
    const before = await list();
    const machine = await createMachine(t);
    expect((await list()).length).toBe(before.length + 1);
    await t.inject({
      method: "PATCH",
      url: `/data/machines/${machine.machine_id}/`,
      headers: t.adminAuth,
      payload: { machine_name: "Renamed" },
    });
    expect(
      (await list()).find((row: { machine_id: number }) => row.machine_id === machine.machine_id)
        .machine_name,
    ).toBe("Renamed");
  });

  it("a machine list reflects a write made by another process straight in SQL", async () => {
    const list = async () =>
      (await t.inject({ method: "GET", url: "/data/machines/", headers: t.adminAuth })).json();
    await list(); // fill the cache
    await t.database.db.query(
      "insert into machine (machine_id, machine_name, tool_capacity) values (4242, 'From elsewhere', 8)",
    );
    const seen = await eventually(async () =>
      (await list()).some((row: { machine_id: number }) => row.machine_id === 4242),
    );
    expect(seen).toBe(true);
  });

  it("a token revoked by another process stops working", async () => {
    const { authorization } = await t.userAuth(["Operator"]);
    const machines = () =>
      t.inject({ method: "GET", url: "/data/machines/", headers: { authorization } });
    expect((await machines()).statusCode).toBe(200); // now cached
    await t.database.db.query(
      "update oauth_token set revoked_at = now() where kind = 'access' and revoked_at is null and user_id = (select max(id) from app_user)",
    );
    expect(await eventually(async () => (await machines()).statusCode === 401)).toBe(true);
  });

  it("a permission removed by another process takes effect", async () => {
    const { authorization } = await t.userAuth(["Supervisor"]);
    const tools = () =>
      t.inject({ method: "GET", url: "/data/tools/", headers: { authorization } });
    expect((await tools()).statusCode).toBe(200);
    await t.database.db.query(
      "delete from group_permission where permission_code = 'tool.view' and group_id = (select id from app_group where name = 'Supervisor')",
    );
    expect(await eventually(async () => (await tools()).statusCode === 403)).toBe(true);
  });
});
