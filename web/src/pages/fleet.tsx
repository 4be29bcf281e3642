import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import type { Machine } from "../api/types.ts";
import { Link } from "../router.tsx";
import { type Fleet, useFleet } from "../state/fleet.ts";
import {
  isLoading,
  type MachineLatest,
  type MachineStatus,
  statusLabel,
  statusOf,
  useLatest,
} from "../state/latest.ts";
import { liveSource } from "../state/sources.ts";
import { toolInUseDetail, toolInUseLabel } from "../state/tools.ts";
import { Empty, ErrorNotice, Loading } from "../ui/feedback.tsx";
import { usePageTitle } from "../ui/page-title.ts";
import { Sparkline } from "../ui/sparkline.tsx";
import { ago, formatNumber, useNow } from "../ui/time.ts";
import { useVirtualGrid } from "../ui/virtual-grid.ts";

type SortKey = "name" | "id" | "status" | "feed";
type StatusFilter = "all" | MachineStatus;

const statusOrder: MachineStatus[] = ["running", "idle", "not-homed", "stale", "no-data"];

/** A tile's state: "loading" until its machine's first values come back, even empty. */
type TileState = MachineStatus | "loading";

function tileState(machine: number, latest: MachineLatest | undefined, now: number): TileState {
  return isLoading(machine) ? "loading" : statusOf(latest, now);
}
const axisOrder = ["X", "Y", "Z", "A", "C"];
const tileHeight = 192;
const tileGap = 16;

export function FleetPage() {
  usePageTitle("Fleet");
  const fleet = useFleet();
  const [filter, setFilter] = useState("");
  const [status, setStatus] = useState<StatusFilter>("all");
  const [sort, setSort] = useState<SortKey>("name");

  if (fleet.error && !fleet.data)
    return <ErrorNotice error={fleet.error} action="see the machines" />;
  if (!fleet.data) return <Loading what="the fleet" />;
  return (
    <FleetView
      fleet={fleet.data}
      error={fleet.error}
      filter={filter}
      setFilter={setFilter}
      status={status}
      setStatus={setStatus}
      sort={sort}
      setSort={setSort}
    />
  );
}

function FleetView(props: {
  fleet: Fleet;
  error: Error | undefined;
  filter: string;
  setFilter: (value: string) => void;
  status: StatusFilter;
  setStatus: (value: StatusFilter) => void;
  sort: SortKey;
  setSort: (value: SortKey) => void;
}) {
  const { fleet, filter, status, sort } = props;
  const gridRef = useRef<HTMLDivElement>(null);
  const now = useNow(1000);
  const [visibleIds, setVisibleIds] = useState<number[]>([]);
  const latest = useLatest(visibleIds);
  // Live values are asked for the machines on screen only (a fleet of thousands is too much to
  // follow): the status of one never shown is not known, and the summary and the status filter
  // say so rather than count it as anything.
  const [shownSoFar] = useState(() => new Set<number>());
  for (const id of visibleIds) shownSoFar.add(id);

  const shown = useMemo(() => {
    const needle = filter.trim().toLowerCase();
    const matches = fleet.machines.filter(
      (machine) =>
        (needle === "" ||
          machine.machine_name.toLowerCase().includes(needle) ||
          String(machine.machine_id).includes(needle)) &&
        (status === "all" ||
          (shownSoFar.has(machine.machine_id) &&
            tileState(machine.machine_id, latest.get(machine.machine_id), now) === status)),
    );
    const feedOf = (machine: Machine) => latest.get(machine.machine_id)?.feed.at(-1) ?? -1;
    // Still loading: last, as nothing is known of it yet.
    const rank = (machine: Machine) => {
      const state = tileState(machine.machine_id, latest.get(machine.machine_id), now);
      return state === "loading" ? statusOrder.length : statusOrder.indexOf(state);
    };
    const compare: Record<SortKey, (a: Machine, b: Machine) => number> = {
      name: (a, b) => a.machine_name.localeCompare(b.machine_name, undefined, { numeric: true }),
      id: (a, b) => a.machine_id - b.machine_id,
      status: (a, b) => rank(a) - rank(b) || compare.name(a, b),
      feed: (a, b) => feedOf(b) - feedOf(a) || compare.name(a, b),
    };
    return matches.sort(compare[sort]);
    // `latest` is mutated in place; `now` ticks each second, which re-reads it.
  }, [fleet, filter, status, sort, latest, now]);

  const grid = useVirtualGrid(gridRef, shown.length, {
    minWidth: 310,
    rowHeight: tileHeight,
    gap: tileGap,
  });
  const onScreen = shown.slice(grid.start, grid.end);
  const onScreenKey = onScreen.map((machine) => machine.machine_id).join(",");
  useEffect(() => {
    setVisibleIds(onScreen.map((machine) => machine.machine_id));
  }, [onScreenKey]);

  const counts = new Map<MachineStatus, number>();
  let known = 0;
  for (const machine of fleet.machines) {
    if (!shownSoFar.has(machine.machine_id)) continue;
    const state = tileState(machine.machine_id, latest.get(machine.machine_id), now);
    if (state === "loading") continue;
    known++;
    counts.set(state, (counts.get(state) ?? 0) + 1);
  }
  const total = fleet.machines.length;
  const byStatus = statusOrder
    .filter((state) => counts.get(state))
    .map((state) => `${counts.get(state)} ${statusLabel[state].toLowerCase()}`)
    .join(" · ");

  return (
    <section aria-labelledby="fleet-title">
      <div class="page-head">
        <div>
          <h1 id="fleet-title">Fleet</h1>
          <p class="muted" aria-live="polite">
            {total} machines
            {known < total && known > 0
              ? ` · of the ${known} shown so far: `
              : byStatus
                ? " · "
                : ""}
            {byStatus}
            <span class="source"> · {liveSource.description}</span>
          </p>
          {status !== "all" && known < total && (
            <p class="muted small" role="status">
              Status is known only for the {known} machines shown so far; the other {total - known}{" "}
              are left out of this list.
            </p>
          )}
        </div>
        <div class="toolbar">
          <label class="control">
            <span>Filter</span>
            <input
              type="search"
              placeholder="Name or id"
              value={filter}
              onInput={(event) => props.setFilter((event.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <label class="control">
            <span>Status</span>
            <select
              value={status}
              onChange={(event) =>
                props.setStatus((event.currentTarget as HTMLSelectElement).value as StatusFilter)
              }
            >
              <option value="all">All</option>
              {statusOrder.map((state) => (
                <option key={state} value={state}>
                  {statusLabel[state]}
                </option>
              ))}
            </select>
          </label>
          <label class="control">
            <span>Sort by</span>
            <select
              value={sort}
              onChange={(event) =>
                props.setSort((event.currentTarget as HTMLSelectElement).value as SortKey)
              }
            >
              <option value="name">Name</option>
              <option value="id">Machine id</option>
              <option value="status">Status</option>
              <option value="feed">Feed</option>
            </select>
          </label>
        </div>
      </div>
      {props.error && <ErrorNotice error={props.error} action="see the machines" />}
      {fleet.machines.length === 0 ? (
        <Empty>
          No machines yet. An Admin, Manager or Supervisor adds them under Administration, or a
          machine adapter sends them through <code>/api/ingest/</code>.
        </Empty>
      ) : shown.length === 0 ? (
        <Empty>No machine matches this filter.</Empty>
      ) : null}
      <div ref={gridRef} class="fleet-grid-frame" style={{ height: `${grid.height}px` }}>
        <ul
          class="fleet-grid"
          aria-label="Machines"
          style={{
            transform: `translateY(${grid.offset}px)`,
            gridTemplateColumns: `repeat(${grid.columns}, minmax(0, 1fr))`,
            gridAutoRows: `${tileHeight}px`,
            gap: `${tileGap}px`,
          }}
        >
          {onScreen.map((machine) => (
            <li key={machine.machine_id}>
              <MachineTile
                machine={machine}
                fleet={fleet}
                latest={latest.get(machine.machine_id)}
                now={now}
              />
            </li>
          ))}
        </ul>
      </div>
    </section>
  );
}

function MachineTile({
  machine,
  fleet,
  latest,
  now,
}: {
  machine: Machine;
  fleet: Fleet;
  latest: MachineLatest | undefined;
  now: number;
}) {
  const state = tileState(machine.machine_id, latest, now);
  const label = state === "loading" ? "Loading" : statusLabel[state];
  const usage = fleet.toolInUse.get(machine.machine_id);
  const tools = fleet.toolsByMachine.get(machine.machine_id) ?? [];
  const axisNames = (fleet.axesByMachine.get(machine.machine_id) ?? [])
    .map((axis) => axis.axis_name)
    .sort((a, b) => rankAxis(a) - rankAxis(b));
  // Axis velocities are mm/s; a feed is said in mm/min, like the tools' feed rates.
  const feed = latest?.feed.at(-1);
  return (
    <Link
      href={`/machines/${machine.machine_id}`}
      class={`tile tile-${state}`}
      aria-label={`${machine.machine_name}, ${label}`}
    >
      <div class="tile-head">
        <span class="tile-name">{machine.machine_name}</span>
        <span class={`pill pill-${state}`}>{label}</span>
      </div>
      <div class="tile-meta muted">
        #{machine.machine_id} ·{" "}
        <span class="tool-in-use" title={toolInUseDetail(tools, usage)}>
          {toolInUseLabel(tools, usage)}
        </span>{" "}
        · {tools.length}/{machine.tool_capacity} tools
      </div>
      <dl class="axes">
        {(axisNames.length ? axisNames : axisOrder).slice(0, 6).map((name) => {
          const sample = latest?.axes.get(name);
          return (
            <div key={name} class={sample && !sample.homed ? "axis axis-unhomed" : "axis"}>
              <dt>{name}</dt>
              <dd>{formatNumber(sample?.actual_position, 1)}</dd>
            </div>
          );
        })}
      </dl>
      <div class="tile-feed">
        <Sparkline values={latest?.feed ?? []} label={`Feed trend of ${machine.machine_name}`} />
        <span class="feed-value">
          {feed === undefined ? "—" : (feed * 60).toFixed(0)} <small>mm/min</small>
        </span>
      </div>
      <div class="tile-foot muted">
        {latest?.updatedAt
          ? `Updated ${ago(latest.updatedAt, now)}`
          : state === "loading"
            ? "Loading its latest values…"
            : "Waiting for data"}
      </div>
    </Link>
  );
}

function rankAxis(name: string): number {
  const index = axisOrder.indexOf(name);
  return index < 0 ? axisOrder.length : index;
}
