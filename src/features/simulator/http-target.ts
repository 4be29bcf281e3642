import type { IngestResult, ValidBatch } from "../ingest/ingest-batch.ts";
import { IngestUnavailable } from "../ingest/ingest-pipeline.ts";
import type { ProvisionedMachine } from "../machines/fleet-provisioning.ts";
import type { MachineDescription } from "./fleet.ts";
import type { SimulatorTarget } from "./simulator-runner.ts";
import { BatchRefused, type FleetIds } from "./simulator-service.ts";

export interface HttpCredentials {
  clientId: string;
  clientSecret: string;
  /**
   * A person allowed to add machines, axes and tools, for creating a fleet the server lacks; the
   * rows then go with this person's token, so they must also be allowed to send each kind.
   */
  username?: string | undefined;
  password?: string | undefined;
}

/**
 * A remote Spindle: rows go through its `POST /api/ingest/`, authorized by a client_credentials
 * token (scope ingest), or by a user's token when a username is given, which also lets the
 * simulator create machines the server does not have yet.
 */
export function httpTarget(baseUrl: string, credentials: HttpCredentials): SimulatorTarget {
  const base = baseUrl.replace(/\/+$/, "");
  let token: string | undefined;

  async function signIn(): Promise<string> {
    const form: Record<string, string> = credentials.username
      ? {
          grant_type: "password",
          username: credentials.username,
          password: credentials.password ?? "",
        }
      : { grant_type: "client_credentials", scope: "ingest read" };
    const answer = await fetch(`${base}/o/token/`, {
      method: "POST",
      signal: AbortSignal.timeout(requestTimeoutMs),
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(credentials.clientId)}:${encodeURIComponent(credentials.clientSecret)}`).toString("base64")}`,
        "content-type": "application/x-www-form-urlencoded",
      },
      body: new URLSearchParams(form),
    });
    const body = (await answer.json().catch(() => ({}))) as {
      access_token?: string;
      error_description?: string;
    };
    if (isAway(answer.status)) throw away(answer);
    if (!answer.ok || !body.access_token)
      throw new Error(`${base} refused the sign-in: ${body.error_description ?? answer.status}`);
    return body.access_token;
  }

  async function call(
    method: string,
    path: string,
    body?: unknown,
    stop?: AbortSignal,
  ): Promise<Response> {
    token ??= await signIn();
    const timeout = AbortSignal.timeout(requestTimeoutMs);
    const send = () =>
      fetch(`${base}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: stop ? AbortSignal.any([timeout, stop]) : timeout,
      });
    let answer = await send();
    if (answer.status === 401) {
      token = await signIn();
      answer = await send();
    }
    return answer;
  }

  async function list<Row>(path: string): Promise<Row[]> {
    const rows: Row[] = [];
    for (let offset = 0; ; offset += 10_000) {
      const answer = await call("GET", `${path}?limit=10000&offset=${offset}`);
      if (isAway(answer.status)) throw away(answer);
      if (!answer.ok) throw new Error(`GET ${path}: ${answer.status} ${await answer.text()}`);
      const page = (await answer.json()) as Row[];
      rows.push(...page);
      if (page.length < 10_000) return rows;
    }
  }

  async function create(path: string, body: unknown): Promise<void> {
    const answer = await call("POST", path, body);
    if (answer.status !== 201)
      throw new Error(`POST ${path}: ${answer.status} ${await answer.text()}`);
  }

  async function provision(machines: MachineDescription[]) {
    const wanted = new Set(machines.map((machine) => machine.machineId));
    const known = new Set(
      (await list<{ machine_id: number }>("/data/machines/")).map((row) => row.machine_id),
    );
    // An adapter's ingest scope sends data; making what it lacks takes a user who may.
    const needUser = (what: string) => {
      if (!credentials.username)
        throw new Error(
          `${what} does not exist on ${base}; pass --username/--password of a user who may add machines, axes and tools and send every kind of row (with the default permissions: an Admin, or in both Manager and Operator), through a client with the password grant and the write scope`,
        );
    };
    for (const machine of machines) {
      if (known.has(machine.machineId)) continue;
      needUser(`machine ${machine.machineId}`);
      await create("/data/machines/", {
        machine_id: machine.machineId,
        machine_name: machine.machineName,
        tool_capacity: machine.toolCapacity,
      });
    }
    const axes = (
      await list<{
        axis_id: number;
        machine: number;
        axis_name: string;
        max_velocity: number;
        max_acceleration: number;
      }>("/data/axes/")
    ).filter((axis) => wanted.has(axis.machine));
    const tools = (await list<{ tool_id: number; machine: number }>("/data/tools/")).filter(
      (tool) => wanted.has(tool.machine),
    );
    let created = false;
    for (const machine of machines) {
      const haveAxes = new Set(
        axes.filter((axis) => axis.machine === machine.machineId).map((axis) => axis.axis_name),
      );
      for (const axis of machine.axes) {
        if (haveAxes.has(axis.axisName)) continue;
        needUser(`axis ${axis.axisName} of machine ${machine.machineId}`);
        await create("/data/axes/", {
          machine: machine.machineId,
          axis_name: axis.axisName,
          max_velocity: axis.maxVelocity,
          max_acceleration: axis.maxAcceleration,
        });
        created = true;
      }
      const haveTools = tools.filter((tool) => tool.machine === machine.machineId).length;
      for (const tool of machine.tools.slice(haveTools)) {
        needUser(`a tool of machine ${machine.machineId}`);
        await create("/data/tools/", {
          machine: machine.machineId,
          tool_offset: tool.toolOffset,
          feedrate: tool.feedrate,
        });
        created = true;
      }
    }
    const finalAxes = created
      ? (await list<(typeof axes)[number]>("/data/axes/")).filter((axis) =>
          wanted.has(axis.machine),
        )
      : axes;
    const finalTools = created
      ? (await list<{ tool_id: number; machine: number }>("/data/tools/")).filter((tool) =>
          wanted.has(tool.machine),
        )
      : tools;
    const provisioned = new Map<number, ProvisionedMachine>(
      machines.map((machine) => [
        machine.machineId,
        { axisIds: new Map(), axisLimits: new Map(), toolIds: [] },
      ]),
    );
    for (const axis of finalAxes) {
      const machine = provisioned.get(axis.machine)!;
      machine.axisIds.set(axis.axis_name, axis.axis_id);
      machine.axisLimits.set(axis.axis_name, {
        maxVelocity: axis.max_velocity,
        maxAcceleration: axis.max_acceleration,
      });
    }
    for (const tool of finalTools.sort((a, b) => a.tool_id - b.tool_id))
      provisioned.get(tool.machine)!.toolIds.push(tool.tool_id);
    return provisioned;
  }

  return {
    // Reachable or not, said with the address and the reason, not as "fetch failed".
    provision: (machines: MachineDescription[]) => reachable(() => provision(machines)),
    async remaining(ids: FleetIds): Promise<FleetIds> {
      const [machines, axes, tools] = await reachable(() =>
        Promise.all([
          list<{ machine_id: number }>("/data/machines/"),
          list<{ axis_id: number }>("/data/axes/"),
          list<{ tool_id: number }>("/data/tools/"),
        ]),
      );
      const kept = (known: Set<number>, listed: number[]) =>
        new Set(listed.filter((id) => known.has(id)));
      return {
        machines: kept(
          ids.machines,
          machines.map((row) => row.machine_id),
        ),
        axes: kept(
          ids.axes,
          axes.map((row) => row.axis_id),
        ),
        tools: kept(
          ids.tools,
          tools.map((row) => row.tool_id),
        ),
      };
    },

    async submit(batch: ValidBatch, stop?: AbortSignal): Promise<IngestResult> {
      const answer = await reachable(() =>
        call(
          "POST",
          "/api/ingest/",
          {
            axis_data: batch.axis.map((row) => ({
              axis: row.axisId,
              actual_position: row.actualPosition,
              target_position: row.targetPosition,
              velocity: row.velocity,
              acceleration: row.acceleration,
              homed: row.homed,
              timestamp: row.time,
            })),
            tool_data: batch.tools.map((row) => ({
              tool_id: row.toolId,
              tool_offset: row.toolOffset,
              feedrate: row.feedrate,
              timestamp: row.time,
            })),
            tool_usage: batch.toolUsage.map((row) => ({
              machine_id: row.machineId,
              tool_in_use: row.toolInUse,
              timestamp: row.time,
            })),
          },
          stop,
        ),
      );
      // Ingest is idempotent, so a batch whose answer was lost can be sent again.
      if (isAway(answer.status)) throw away(answer);
      if (answer.status === 400)
        throw new BatchRefused(`POST /api/ingest/: 400 ${await answer.text()}`);
      if (answer.status === 403)
        throw new Error(
          `POST /api/ingest/: 403 ${await answer.text()}: ${credentials.username ? `${credentials.username} needs axisdata.add, tool.change and toolusage.add (with the default permissions: an Admin, or in both Manager and Operator), and the client must hold the write or ingest scope` : "the client needs the ingest scope"}`,
        );
      if (answer.status !== 202)
        throw new Error(`POST /api/ingest/: ${answer.status} ${await answer.text()}`);
      return (await answer.json()) as IngestResult;
    },
  };

  /** A gateway's or the server's "not now": wait and retry. */
  function away(answer: Response): IngestUnavailable {
    return new IngestUnavailable(
      `${base} answered ${answer.status}`,
      retryAfterSeconds(answer.headers.get("retry-after")),
    );
  }

  /** Runs requests; a network failure or timeout means the server is away for now. */
  async function reachable<T>(request: () => Promise<T>): Promise<T> {
    try {
      return await request();
    } catch (error) {
      if (error instanceof TypeError || (error as Error).name === "TimeoutError")
        throw new IngestUnavailable(`cannot reach ${base}: ${networkReason(error)}`);
      throw error;
    }
  }
}

const isAway = (status: number) => status === 502 || status === 503 || status === 504;

/** How long to wait for any one request to the remote Spindle. */
const requestTimeoutMs = 30_000;

/** A Retry-After in seconds, kept within 1 s and 5 min whatever the server sends. */
export function retryAfterSeconds(header: string | null): number {
  const seconds = Number(header);
  if (header === null || !Number.isFinite(seconds)) return 1;
  return Math.min(300, Math.max(1, Math.ceil(seconds)));
}

function networkReason(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}
