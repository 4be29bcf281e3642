import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { type Database, limited } from "./database.ts";

let database: TestDatabase;
beforeAll(async () => {
  database = await openTestDatabase({ migrated: false });
});
afterAll(() => database.drop());

describe("limited", () => {
  /** A transaction that holds its turn until `finish` is called. */
  function holdTurn(db: Database, order: string[]) {
    let finish!: () => void;
    const held = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let began!: () => void;
    const running = new Promise<void>((resolve) => {
      began = resolve;
    });
    const done = db.transaction(async (tx) => {
      await tx.query("select 1");
      order.push("first began");
      began();
      await held;
      order.push("first ended");
    });
    return { running, finish, done };
  }

  it("runs at most its permits at once; the rest wait their turn", async () => {
    const { db } = limited(database.db, { permits: 1, waitMs: 5000, busy: new Error("busy") });
    expect(db.connections).toBe(1);
    const order: string[] = [];
    const first = holdTurn(db, order);
    const second = db.query<{ n: number }>("select 2 as n").then(({ rows }) => {
      order.push("second");
      return rows[0]!.n;
    });
    await first.running;
    // Give the second every chance to overtake.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(order).toEqual(["first began"]);
    first.finish();
    await first.done;
    expect(await second).toBe(2);
    expect(order).toEqual(["first began", "first ended", "second"]);
  });

  it("fails with busy when the turn does not come within waitMs; the patient view waits", async () => {
    const busy = new Error("busy");
    const { db, patient } = limited(database.db, { permits: 1, waitMs: 50, busy });
    const first = holdTurn(db, []);
    await first.running;
    // The patient one waits as long as it takes, and keeps its place in the queue.
    const waiting = patient.query<{ n: number }>("select 5 as n");
    await expect(db.query("select 3")).rejects.toBe(busy);
    first.finish();
    await first.done;
    expect((await waiting).rows).toEqual([{ n: 5 }]);
    expect((await db.query<{ n: number }>("select 4 as n")).rows).toEqual([{ n: 4 }]);
  });

  it("gives the turn back when a statement fails", async () => {
    const { db } = limited(database.db, { permits: 1, waitMs: 1000, busy: new Error("busy") });
    await expect(db.query("select * from no_such_table")).rejects.toThrow(/no_such_table/);
    await expect(
      db.transaction(async (tx) => {
        await tx.query("select 1");
        throw new Error("work failed");
      }),
    ).rejects.toThrow("work failed");
    expect((await db.query<{ n: number }>("select 4 as n")).rows).toEqual([{ n: 4 }]);
  });
});
