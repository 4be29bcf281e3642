import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError } from "../api/client.ts";
import { api } from "../api/instance.ts";
import type { Axis, AxisSample, Machine, Tool, ToolUsage } from "../api/types.ts";
import { Link } from "../router.tsx";
import { AxisSeries } from "../state/axis-series.ts";
import { type MachineLatest, statusLabel, statusOf } from "../state/latest.ts";
import { useQuery } from "../state/query.ts";
import { recentSamples } from "../state/recent.ts";
import { liveSource } from "../state/sources.ts";
import { toolInUseDetail, toolInUseFigures, toolInUseLabel } from "../state/tools.ts";
import { axisUnits } from "../state/units.ts";
import { ErrorNotice, Loading } from "../ui/feedback.tsx";
import { usePageTitle } from "../ui/page-title.ts";
import { ago, formatNumber, useNow } from "../ui/time.ts";
import { type ChartSeries, TimeChart } from "../ui/time-chart.tsx";

const windows = [
  { minutes: 1, label: "1 min" },
  { minutes: 5, label: "5 min" },
  { minutes: 15, label: "15 min" },
  { minutes: 60, label: "1 h" },
];

const axisOrder = ["X", "Y", "Z", "A", "C"];

const chartSeries: ChartSeries[] = [
  { label: "Actual", color: "#0e8a96", scale: "position" },
  { label: "Target", color: "#d98e04", scale: "position", dash: [6, 4] },
  { label: "Distance to go", color: "#8e5bd0", scale: "position", show: false },
  { label: "Velocity", color: "#d1495b", scale: "velocity" },
  { label: "Acceleration", color: "#5b8c2a", scale: "acceleration", show: false },
];

interface MachineInfo {
  machine: Machine;
  axes: Axis[];
  tools: Tool[];
  usage: ToolUsage | undefined;
}

async function loadMachine(id: number): Promise<MachineInfo> {
  const [machine, axes, tools, usage] = await Promise.all([
    api.get<Machine>(`/data/machines/${id}/`),
    api.get<Axis[]>("/data/axes/", { machine: id }),
    api.get<Tool[]>("/data/tools/", { machine: id }),
    api.get<ToolUsage[]>("/data/tool-usage/", {
      machine: id,
      ordering: "-update_timestamp",
      limit: 1,
    }),
  ]);
  return { machine, axes, tools, usage: usage[0] };
}

export function MachinePage({ id }: { id: number }) {
  const info = useQuery(() => loadMachine(id), [id], 15_000);
  const missing = info.error instanceof ApiError && info.error.status === 404;
  // "Deleted" only if it was on screen before (the reload every 15 s says so); an address for
  // a machine never seen (a typo, an old bookmark) is simply not found.
  const deleted = missing && info.data !== undefined;
  usePageTitle(
    missing ? (deleted ? "Deleted" : "Not found") : undefined,
    info.data?.machine.machine_name ?? `Machine #${id}`,
  );
  if (missing) {
    return <MachineGone id={id} name={info.data?.machine.machine_name} deleted={deleted} />;
  }
  if (info.error && !info.data) return <ErrorNotice error={info.error} action="see this machine" />;
  if (!info.data) return <Loading what="the machine" />;
  return <MachineView info={info.data} />;
}

function MachineGone({
  id,
  name,
  deleted,
}: {
  id: number;
  name: string | undefined;
  deleted: boolean;
}) {
  return (
    <section aria-labelledby="machine-title">
      <nav class="breadcrumbs" aria-label="Breadcrumbs">
        <Link href="/">Fleet</Link> <span aria-hidden="true">›</span> {name ?? `#${id}`}
      </nav>
      <h1 id="machine-title">{name ?? `Machine #${id}`}</h1>
      <div class="notice notice-error" role="alert">
        <strong>{deleted ? "This machine no longer exists" : "Not found"}</strong>
        <span>
          {deleted ? `Machine #${id} has been deleted.` : `There is no machine #${id}.`} Go back to
          the <Link href="/">fleet</Link>.
        </span>
      </div>
    </section>
  );
}

function MachineView({ info }: { info: MachineInfo }) {
  const { machine } = info;
  const [minutes, setMinutes] = useState(15);
  const [paused, setPaused] = useState(false);
  const [version, setVersion] = useState(0);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [downsampled, setDownsampled] = useState(false);
  // Bumped when the live feed skipped samples: the window is read again, not drawn across.
  const [gaps, setGaps] = useState(0);
  const series = useRef(new Map<string, AxisSeries>());
  const now = useNow(1000);

  useEffect(() => {
    if (paused) return;
    let stopped = false;
    let stopFollowing = () => {};
    let frame = 0;
    const redraw = () => {
      if (frame === 0) {
        frame = requestAnimationFrame(() => {
          frame = 0;
          setVersion((n) => n + 1);
        });
      }
    };
    const append = (samples: AxisSample[]) => {
      for (const sample of samples) {
        let axis = series.current.get(sample.axis_name);
        if (!axis) {
          axis = new AxisSeries();
          series.current.set(sample.axis_name, axis);
        }
        axis.push(sample);
      }
      const cutoff = Date.now() / 1000 - minutes * 60;
      for (const axis of series.current.values()) axis.trim(cutoff);
      redraw();
    };
    recentSamples(machine.machine_id, minutes).then(
      ({ rows, downsampled: coarse }) => {
        if (stopped) return;
        series.current = new Map();
        setDownsampled(coarse);
        setError(undefined);
        append(rows);
        const since = rows.at(-1)?.update_timestamp ?? new Date().toISOString();
        stopFollowing = liveSource.follow(machine.machine_id, since, append, () =>
          setGaps((n) => n + 1),
        );
      },
      (failure: Error) => {
        if (!stopped) setError(failure);
      },
    );
    return () => {
      stopped = true;
      stopFollowing();
      cancelAnimationFrame(frame);
    };
  }, [machine.machine_id, minutes, paused, gaps]);

  const axes = useMemo(() => {
    const names = new Set([...info.axes.map((axis) => axis.axis_name), ...series.current.keys()]);
    return [...names].sort((a, b) => rank(a) - rank(b));
  }, [info.axes, version]);

  const chartData = useMemo(
    () => new Map([...series.current].map(([name, axis]) => [name, axis.data()])),
    [version],
  );

  const entry: MachineLatest = { axes: new Map(), feed: [], updatedAt: 0 };
  for (const [name, axis] of series.current) {
    if (!axis.last) continue;
    entry.axes.set(name, axis.last);
    entry.updatedAt = Math.max(entry.updatedAt, Date.parse(axis.last.update_timestamp));
  }
  const state = statusOf(entry, now);
  const limits = new Map(info.axes.map((axis) => [axis.axis_name, axis]));

  return (
    <section aria-labelledby="machine-title">
      <nav class="breadcrumbs" aria-label="Breadcrumbs">
        <Link href="/">Fleet</Link> <span aria-hidden="true">›</span> {machine.machine_name}
      </nav>
      <div class="page-head">
        <div>
          <h1 id="machine-title">
            {machine.machine_name} <span class={`pill pill-${state}`}>{statusLabel[state]}</span>
          </h1>
          <p class="muted">
            Machine #{machine.machine_id} · {info.tools.length}/{machine.tool_capacity} tools ·{" "}
            <span class="tool-in-use" title={toolInUseDetail(info.tools, info.usage)}>
              {toolInUseLabel(info.tools, info.usage)}
              {toolInUseFigures(info.tools, info.usage) &&
                ` (${toolInUseFigures(info.tools, info.usage)})`}
            </span>{" "}
            · {entry.updatedAt ? `updated ${ago(entry.updatedAt, now)}` : "no data in this window"}
          </p>
        </div>
        <div class="toolbar">
          <fieldset class="segmented">
            <legend class="visually-hidden">Time window</legend>
            {windows.map((option) => (
              <button
                key={option.minutes}
                type="button"
                class="button"
                aria-pressed={minutes === option.minutes}
                onClick={() => setMinutes(option.minutes)}
              >
                {option.label}
              </button>
            ))}
          </fieldset>
          <button
            type="button"
            class="button"
            aria-pressed={paused}
            onClick={() => setPaused(!paused)}
          >
            {paused ? "Resume" : "Pause"}
          </button>
        </div>
      </div>
      {error && <ErrorNotice error={error} action="see this machine's data" />}

      <div class="panel table-scroll">
        <table class="table table-compact" aria-label="Latest axis values">
          <thead>
            <tr>
              <th scope="col">Axis</th>
              <th scope="col" class="num">
                Actual
              </th>
              <th scope="col" class="num">
                Target
              </th>
              <th scope="col" class="num">
                To go
              </th>
              <th scope="col" class="num">
                Velocity
              </th>
              <th scope="col" class="num">
                Acceleration
              </th>
              <th scope="col">Homed</th>
              <th scope="col" class="num">
                Limits (v / a)
              </th>
            </tr>
          </thead>
          <tbody>
            {axes.map((name) => {
              const last = series.current.get(name)?.last;
              const limit = limits.get(name);
              // Each row its own units: a rotary axis (A, C) turns in degrees.
              const units = axisUnits(name);
              return (
                <tr key={name}>
                  <th scope="row">{name}</th>
                  <td class="num">
                    <Measure value={last?.actual_position} unit={units.position} />
                  </td>
                  <td class="num">
                    <Measure value={last?.target_position} unit={units.position} />
                  </td>
                  <td class="num">
                    <Measure value={last?.distance_to_go} unit={units.position} />
                  </td>
                  <td class="num">
                    <Measure value={last?.velocity} unit={units.velocity} digits={1} />
                  </td>
                  <td class="num">
                    <Measure value={last?.acceleration} unit={units.acceleration} digits={1} />
                  </td>
                  <td>{last ? last.homed ? "Yes" : <span class="warn">No</span> : "—"}</td>
                  <td class="num muted">
                    {limit ? (
                      <>
                        {limit.max_velocity} <span class="unit">{units.velocity}</span> /{" "}
                        {limit.max_acceleration} <span class="unit">{units.acceleration}</span>
                      </>
                    ) : (
                      "—"
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>

      <p class="muted chart-note">
        {paused ? "Paused. " : `Plotting the last ${minutes} min, ${liveSource.description}. `}
        {downsampled ? "Older points are downsampled by the history endpoint. " : ""}
        Drag across a chart to zoom, double-click to reset; click a legend entry to show or hide it.
      </p>
      <div class="charts">
        {axes.map((name) => (
          <article key={name} class="panel chart-panel" aria-label={`Axis ${name}`}>
            <h2>Axis {name}</h2>
            <TimeChart
              title={`Axis ${name}: position, velocity and acceleration over the last ${minutes} minutes`}
              series={chartSeries}
              units={axisUnits(name)}
              data={chartData.get(name) ?? [[], [], [], [], [], []]}
              windowSeconds={minutes * 60}
            />
          </article>
        ))}
        {axes.length === 0 && <p class="empty">This machine has no axes yet.</p>}
      </div>
    </section>
  );
}

/** A number with its unit, or a dash (with none) when there is no value yet. */
function Measure({
  value,
  unit,
  digits,
}: {
  value: number | undefined;
  unit: string;
  digits?: number;
}) {
  if (value === undefined) return <>—</>;
  return (
    <>
      {formatNumber(value, digits)} <span class="unit">{unit}</span>
    </>
  );
}

function rank(name: string): number {
  const index = axisOrder.indexOf(name);
  return index < 0 ? axisOrder.length : index;
}
