import type { ComponentChildren } from "preact";
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { everyRow } from "../api/every-row.ts";
import { api } from "../api/instance.ts";
import type { Axis, Machine } from "../api/types.ts";
import { navigate, useSearchParams } from "../router.tsx";
import {
  chartData,
  describeSpan,
  describeWidth,
  fromLocalInput,
  type HistoryField,
  type HistoryRequest,
  type HistoryRow,
  type HistoryView,
  historyFields,
  historyQuery,
  historyWindows,
  searchFromView,
  toLocalInput,
  viewFromSearch,
  type WindowId,
} from "../state/history.ts";
import { useQuery } from "../state/query.ts";
import { unitOfAxes } from "../state/units.ts";
import { ErrorNotice, Loading } from "../ui/feedback.tsx";
import { HistoryChart, seriesColors } from "../ui/history-chart.tsx";
import { usePageTitle } from "../ui/page-title.ts";

const axisOrder = ["X", "Y", "Z", "A", "C"];
/** Buckets per series: about one per pixel of a wide chart; zooming in divides the bucket width. */
const maxPoints = 600;
/** Shown at most in the machine list at once; the filter finds the rest. */
const listedMachines = 200;
/** The most samples one CSV download holds in memory (about 100 bytes a row). */
const maxSampleRows = 2_000_000;

interface Catalog {
  machines: Machine[];
  axisNames: string[];
}

async function loadCatalog(): Promise<Catalog> {
  const [machines, axes] = await Promise.all([
    everyRow<Machine>(api, "/data/machines/"),
    everyRow<Axis>(api, "/data/axes/"),
  ]);
  machines.sort((a, b) =>
    a.machine_name.localeCompare(b.machine_name, undefined, { numeric: true }),
  );
  const names = [...new Set(axes.map((axis) => axis.axis_name))];
  const rank = (name: string) => (axisOrder.includes(name) ? axisOrder.indexOf(name) : 99);
  names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return { machines, axisNames: names };
}

export function HistoryPage() {
  usePageTitle("History");
  const catalog = useQuery(loadCatalog, []);
  if (catalog.error && !catalog.data)
    return <ErrorNotice error={catalog.error} action="see machine history" />;
  if (!catalog.data) return <Loading what="machines" />;
  return <HistoryExplorer catalog={catalog.data} />;
}

function toggle<T>(values: readonly T[], value: T): T[] {
  return values.includes(value) ? values.filter((v) => v !== value) : [...values, value];
}

function HistoryExplorer({ catalog }: { catalog: Catalog }) {
  // The view starts from the page's address and writes itself back to it (below).
  const params = useSearchParams();
  const [initial] = useState(() =>
    viewFromSearch(params, {
      machines: catalog.machines.map((m) => m.machine_id),
      axisNames: catalog.axisNames,
    }),
  );
  const [machines, setMachines] = useState<number[]>(initial.machines);
  const [axes, setAxes] = useState<string[]>(initial.axes);
  const [fields, setFields] = useState<HistoryField[]>(initial.fields);
  const [windowId, setWindowId] = useState<WindowId>(
    "relative" in initial.window ? initial.window.relative : "custom",
  );
  const [customFrom, setCustomFrom] = useState(() =>
    toLocalInput("from" in initial.window ? initial.window.from : Date.now() - 3_600_000),
  );
  const [customTo, setCustomTo] = useState(() =>
    toLocalInput("to" in initial.window ? initial.window.to : Date.now()),
  );
  const [zoom, setZoom] = useState<{ from: number; to: number } | null>(null);
  const [refresh, setRefresh] = useState(0);
  const [machineFilter, setMachineFilter] = useState("");

  // The window as instants: a relative one ends now, each time the selection changes.
  const base = useMemo(() => {
    const option = historyWindows.find((w) => w.id === windowId)!;
    if (windowId !== "custom") {
      const to = Date.now();
      return { from: to - option.minutes * 60_000, to };
    }
    return { from: fromLocalInput(customFrom), to: fromLocalInput(customTo) };
  }, [windowId, customFrom, customTo, refresh]);

  // A relative window follows time: asked again about a hundredth of it after each answer
  // lands, at most every 10 s, unless zoomed (a zoom is a fixed span). Counted from the answer,
  // as useQuery does: counted from the question, a query slower than the interval was aborted
  // by the next, forever.
  const relativeMinutes = historyWindows.find((w) => w.id === windowId)!.minutes;
  const followEvery = Math.max(10_000, Math.round((relativeMinutes * 60_000) / 100));
  const following = windowId !== "custom" && !zoom;
  const follow = useRef({ following, followEvery });
  follow.current = { following, followEvery };
  const followTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  const stopFollowing = () => clearTimeout(followTimer.current);
  const followAfterAnswer = () => {
    stopFollowing();
    if (follow.current.following)
      followTimer.current = setTimeout(() => setRefresh((n) => n + 1), follow.current.followEvery);
  };
  useEffect(() => {
    if (!following) stopFollowing();
  }, [following]);
  useEffect(() => stopFollowing, []);

  const problem =
    machines.length === 0
      ? "Pick at least one machine."
      : axes.length === 0
        ? "Pick at least one axis."
        : fields.length === 0
          ? "Pick at least one field."
          : Number.isNaN(base.from) || Number.isNaN(base.to)
            ? "Enter both ends of the custom window."
            : base.from >= base.to
              ? "The window must start before it ends."
              : undefined;

  // The selection in a stable order (the catalog's), for the request and the address alike.
  const selection = {
    machines: [...machines].sort((a, b) => a - b),
    axes: catalog.axisNames.filter((name) => axes.includes(name)),
    fields: historyFields.map((f) => f.name).filter((name) => fields.includes(name)),
  };
  const request: HistoryRequest | undefined = problem
    ? undefined
    : {
        ...selection,
        from: zoom?.from ?? base.from,
        to: zoom?.to ?? base.to,
        maxPoints,
      };
  const requestKey = request ? JSON.stringify(request) : "";

  // The address follows the view (replaced, not pushed: Back leaves the page, not one tick).
  const customSpan = { from: fromLocalInput(customFrom), to: fromLocalInput(customTo) };
  const shownWindow: HistoryView["window"] | undefined =
    zoom ??
    (windowId !== "custom"
      ? { relative: windowId }
      : Number.isFinite(customSpan.from) && Number.isFinite(customSpan.to)
        ? customSpan
        : undefined);
  const address = shownWindow ? searchFromView({ ...selection, window: shownWindow }) : undefined;
  useEffect(() => {
    if (address) navigate(`/history?${address}`, { replace: true, keepScroll: true });
  }, [address]);

  // What the person chose, whatever the time: an answer for the same view is the window
  // following time, and is not announced again.
  const viewKey = JSON.stringify({ ...selection, windowId, zoom, customFrom, customTo });
  const [answer, setAnswer] = useState<{
    request: HistoryRequest;
    rows: HistoryRow[];
    /** The width of its buckets in ms, as the server states it. */
    bucketMs: number | undefined;
    view: string;
  }>();
  const [announced, setAnnounced] = useState({ view: "", text: "" });
  const [error, setError] = useState<Error>();
  const [loading, setLoading] = useState(false);
  useEffect(() => {
    if (!request) return;
    const abort = new AbortController();
    stopFollowing();
    setLoading(true);
    api.getWithHeaders<HistoryRow[]>("/api/axis-data/", historyQuery(request), abort.signal).then(
      ({ body: rows, headers }) => {
        const width = Number(headers.get("x-bucket-width-ms"));
        const bucketMs = width > 0 ? width : undefined;
        setAnswer({ request, rows, bucketMs, view: viewKey });
        setError(undefined);
        setLoading(false);
        followAfterAnswer();
      },
      (failure: Error) => {
        if (failure.name === "AbortError") return;
        setError(failure);
        // Charts of another window beneath the error would pass for this one's; a failed
        // refresh of the same view (following time) keeps what it showed.
        setAnswer((old) => (old?.view === viewKey ? old : undefined));
        setLoading(false);
        followAfterAnswer();
      },
    );
    return () => abort.abort();
  }, [requestKey]);

  const shown = useMemo(
    () => (answer ? chartData(answer.rows, answer.request.fields, answer.bucketMs) : undefined),
    [answer],
  );

  const status =
    shown && answer
      ? `${shown.buckets} buckets from ${shown.samples.toLocaleString()} samples · ${describeSpan(
          answer.request.to - answer.request.from,
        )} from ${new Date(answer.request.from).toLocaleString()}${
          shown.bucketMs === undefined ? "" : ` · buckets of ${describeWidth(shown.bucketMs)}`
        }${following ? ` · follows time, asked again every ${describeSpan(followEvery)}` : ""}`
      : "";
  // Said once per view the person chose, not again each time the window follows time.
  useEffect(() => {
    if (!shown || !answer || answer.view === announced.view) return;
    const text = `Charted: ${shown.series.length} series, ${shown.samples.toLocaleString()} samples.`;
    setAnnounced({ view: answer.view, text });
  }, [answer]);

  const [downloading, setDownloading] = useState<"buckets" | "samples">();
  const [downloadError, setDownloadError] = useState<Error>();
  const [downloadRefused, setDownloadRefused] = useState<string>();
  // The file is held whole in memory before it is saved: cancellable, and stopped on leaving.
  const downloadAbort = useRef<AbortController | undefined>(undefined);
  useEffect(() => () => downloadAbort.current?.abort(), []);
  // The state lags a render behind; two presses within one would both find it unset.
  const downloadRunning = useRef(false);
  const downloadCsv = async (rows: "buckets" | "samples") => {
    if (!request || downloadRunning.current) return;
    setDownloadError(undefined);
    setDownloadRefused(undefined);
    // The charted buckets count the samples of the same window: above the bound, the file
    // would not fit a browser tab's memory.
    const charted = answer && answer.view === viewKey ? shown?.samples : undefined;
    if (rows === "samples" && charted !== undefined && charted > maxSampleRows) {
      setDownloadRefused(
        `This window holds about ${charted.toLocaleString()} samples, more than the ${maxSampleRows.toLocaleString()} a browser can save at once. Choose a shorter window, or download the buckets.`,
      );
      return;
    }
    const abort = new AbortController();
    downloadAbort.current = abort;
    downloadRunning.current = true;
    setDownloading(rows);
    try {
      const { blob, filename } = await api.download(
        "/api/axis-data/",
        historyQuery(request, rows),
        abort.signal,
      );
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      // Both files come from one endpoint under one name: told apart here, so the second
      // download does not land as "(1)" beside the first.
      const named =
        filename ?? `axis-data-${new Date(request.from).toISOString().replace(/[:.]/g, "-")}.csv`;
      link.download = named.replace(/(\.csv)?$/i, `-${rows}.csv`);
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (failure) {
      if ((failure as Error).name !== "AbortError") setDownloadError(failure as Error);
    } finally {
      if (downloadAbort.current === abort) downloadAbort.current = undefined;
      downloadRunning.current = false;
      setDownloading(undefined);
    }
  };

  const zoomTo = (from: number, to: number) => {
    // Narrower than a second has nothing more to show at 100 ms samples.
    if (to - from < 1000) return;
    // Whole seconds, like a custom window, so the address reopens exactly this span.
    setZoom({ from: Math.floor(from / 1000) * 1000, to: Math.ceil(to / 1000) * 1000 });
  };
  // Back to the whole window; a relative one as it is now, not as it was when zoomed.
  const resetZoom = () => {
    setZoom(null);
    setRefresh((n) => n + 1);
  };
  const zoomBy = (factor: number) => {
    if (!request) return;
    const middle = (request.from + request.to) / 2;
    const half = ((request.to - request.from) * factor) / 2;
    const from = Math.max(base.from, middle - half);
    const to = Math.min(base.to, middle + half);
    if (from <= base.from && to >= base.to) resetZoom();
    else zoomTo(Math.round(from), Math.round(to));
  };

  const needle = machineFilter.trim().toLowerCase();
  const matching = catalog.machines.filter(
    (m) =>
      needle === "" ||
      m.machine_name.toLowerCase().includes(needle) ||
      String(m.machine_id).includes(needle),
  );
  const listed = [
    // Selected machines stay in the list whatever the filter, so they can be unticked.
    ...catalog.machines.filter((m) => machines.includes(m.machine_id) && !matching.includes(m)),
    ...matching.slice(0, listedMachines),
  ];

  return (
    <section aria-labelledby="history-title">
      <div class="page-head">
        <div>
          <h1 id="history-title">History</h1>
          <p class="muted">
            Any machines, axes and fields over any window, each bucket's average drawn over its
            minimum–maximum band.
          </p>
        </div>
        <div class="toolbar">
          <button
            type="button"
            class="button"
            onClick={() => setRefresh((n) => n + 1)}
            disabled={windowId === "custom"}
          >
            Refresh
          </button>
          {/* Said to be disabled while a download is out, not disabled: a disabled button drops the
              focus of whoever pressed it to the page's top; downloadCsv ignores presses meanwhile.
              Without a request (a choice left incomplete, elsewhere) they are disabled. */}
          <button
            type="button"
            class="button button-primary"
            onClick={() => void downloadCsv("samples")}
            disabled={!request}
            aria-disabled={downloading !== undefined || undefined}
            aria-busy={downloading === "samples" || undefined}
            title="Every sample in the window, with homed"
          >
            {downloading === "samples" ? "Preparing CSV…" : "Download samples (CSV)"}
          </button>
          <button
            type="button"
            class="button"
            onClick={() => void downloadCsv("buckets")}
            disabled={!request}
            aria-disabled={downloading !== undefined || undefined}
            aria-busy={downloading === "buckets" || undefined}
            title="The buckets charted: per field its average, minimum and maximum"
          >
            {downloading === "buckets" ? "Preparing CSV…" : "Download buckets (CSV)"}
          </button>
          {downloading && (
            <button type="button" class="button" onClick={() => downloadAbort.current?.abort()}>
              Cancel download
            </button>
          )}
        </div>
      </div>

      <form
        class="panel history-controls"
        aria-label="History query"
        onSubmit={(event) => event.preventDefault()}
      >
        <fieldset class="history-machines">
          <legend>Machines</legend>
          <label class="control">
            <span>Find machine</span>
            <input
              type="search"
              placeholder="Name or id"
              value={machineFilter}
              onInput={(event) => setMachineFilter((event.currentTarget as HTMLInputElement).value)}
            />
          </label>
          <div class="pick-list">
            {listed.map((machine) => (
              <label key={machine.machine_id} class="check">
                <input
                  type="checkbox"
                  checked={machines.includes(machine.machine_id)}
                  onChange={() => {
                    setZoom(null);
                    setMachines(toggle(machines, machine.machine_id));
                  }}
                />
                {machine.machine_name} <span class="muted small">#{machine.machine_id}</span>
              </label>
            ))}
            {matching.length > listedMachines && (
              <p class="muted small">
                {matching.length - listedMachines} more; narrow the search to see them.
              </p>
            )}
            {listed.length === 0 && <p class="muted small">No machine matches.</p>}
          </div>
        </fieldset>

        <div class="history-options">
          <Chips legend="Axes">
            {catalog.axisNames.map((name) => (
              <Chip
                key={name}
                label={name}
                checked={axes.includes(name)}
                onChange={() => {
                  setZoom(null);
                  setAxes(toggle(axes, name));
                }}
              />
            ))}
          </Chips>
          <Chips legend="Fields">
            {historyFields.map((field) => (
              <Chip
                key={field.name}
                label={field.label}
                checked={fields.includes(field.name)}
                onChange={() => setFields(toggle(fields, field.name))}
              />
            ))}
          </Chips>
          <fieldset class="history-window">
            <legend>Window</legend>
            <div class="segmented">
              {historyWindows.map((option) => (
                <button
                  key={option.id}
                  type="button"
                  class="button"
                  aria-pressed={windowId === option.id}
                  onClick={() => {
                    setZoom(null);
                    if (option.id === "custom" && windowId !== "custom") {
                      setCustomFrom(toLocalInput(base.from));
                      setCustomTo(toLocalInput(base.to));
                    }
                    setWindowId(option.id);
                  }}
                >
                  {option.label}
                </button>
              ))}
            </div>
            {windowId === "custom" && (
              <div class="history-custom">
                <label class="control">
                  <span>From</span>
                  <input
                    type="datetime-local"
                    step={1}
                    value={customFrom}
                    onChange={(event) => {
                      setZoom(null);
                      setCustomFrom((event.currentTarget as HTMLInputElement).value);
                    }}
                  />
                </label>
                <label class="control">
                  <span>To</span>
                  <input
                    type="datetime-local"
                    step={1}
                    value={customTo}
                    onChange={(event) => {
                      setZoom(null);
                      setCustomTo((event.currentTarget as HTMLInputElement).value);
                    }}
                  />
                </label>
              </div>
            )}
          </fieldset>
        </div>
      </form>

      {problem && (
        <p class="notice notice-info" role="status">
          {problem}
        </p>
      )}
      {error && request && <ErrorNotice error={error} action="read axis history" />}
      {downloadError && <ErrorNotice error={downloadError} action="export axis history" />}
      {downloadRefused && (
        <p class="notice notice-info" role="status">
          {downloadRefused}
        </p>
      )}

      {request && (
        <div class="history-status">
          <p class="muted">
            {loading ? (
              <>
                <span class="spinner" aria-hidden="true" /> Querying…{" "}
              </>
            ) : null}
            {status}
          </p>
          <p class="visually-hidden" aria-live="polite">
            {announced.text}
          </p>
          <div class="toolbar">
            <button type="button" class="button button-small" onClick={() => zoomBy(0.5)}>
              Zoom in
            </button>
            <button
              type="button"
              class="button button-small"
              onClick={() => zoomBy(2)}
              disabled={!zoom}
            >
              Zoom out
            </button>
            <button type="button" class="button button-small" onClick={resetZoom} disabled={!zoom}>
              Reset zoom
            </button>
          </div>
        </div>
      )}

      {/* Without a request (the choice is incomplete), nothing charted matches the form. */}
      {request && shown && answer && shown.series.length === 0 && !loading && (
        <div class="empty">No samples in this window for this selection.</div>
      )}
      {request && shown && answer && shown.series.length > 0 && (
        <>
          <ul class="history-legend" aria-label="Series">
            {shown.series.map((series, index) => (
              <li key={series.label}>
                <span
                  class="swatch"
                  style={{ background: seriesColors[index % seriesColors.length] }}
                  aria-hidden="true"
                />
                {series.label}
              </li>
            ))}
          </ul>
          <p class="muted chart-note">
            Drag across a chart to zoom in (it asks the server for finer buckets); double-click or
            Reset zoom to go back.
          </p>
          <div class="charts">
            {answer.request.fields.map((name) => {
              const field = historyFields.find((f) => f.name === name)!;
              const unit = unitOfAxes(
                field.quantity,
                shown.series.map((series) => series.axisName),
              );
              return (
                <article key={name} class="panel chart-panel" aria-label={field.label}>
                  <h2>
                    {field.label} <span class="muted">({unit})</span>
                  </h2>
                  <HistoryChart
                    title={`${field.label} (${unit}) of ${shown.series.map((s) => s.label).join(", ")}`}
                    unit={unit}
                    series={shown.series}
                    data={shown.byField.get(name)!}
                    from={answer.request.from}
                    to={answer.request.to}
                    onZoom={zoomTo}
                    onReset={resetZoom}
                  />
                </article>
              );
            })}
          </div>
        </>
      )}
    </section>
  );
}

function Chips({ legend, children }: { legend: string; children: ComponentChildren }) {
  return (
    <fieldset class="chips history-chips">
      <legend>{legend}</legend>
      {children}
    </fieldset>
  );
}

function Chip({
  label,
  checked,
  onChange,
}: {
  label: string;
  checked: boolean;
  onChange: () => void;
}) {
  return (
    <label class={`chip${checked ? " chip-on" : ""}`}>
      <input type="checkbox" checked={checked} onChange={onChange} />
      {label}
    </label>
  );
}
