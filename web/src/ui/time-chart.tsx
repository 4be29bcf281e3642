import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { Quantity } from "../state/units.ts";

export interface ChartSeries {
  label: string;
  color: string;
  scale: Quantity;
  dash?: number[];
  show?: boolean;
}

function cssColor(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/**
 * A uPlot time chart that is created once and fed with `setData`, so thousands of points at
 * ten updates a second stay smooth. Click a legend entry to show or hide a series.
 */
/** "Showing 14:05:10 to 14:20:10", each a <time> with its ISO 8601 instant. */
function describeSpan(caption: HTMLElement, fromSeconds: number, toSeconds: number): void {
  const time = (seconds: number) => {
    const at = new Date(Math.round(seconds * 1000));
    const element = document.createElement("time");
    element.dateTime = at.toISOString();
    element.textContent = at.toLocaleTimeString();
    return element;
  };
  const from = time(fromSeconds);
  const to = time(toSeconds);
  const text = `Showing ${from.textContent} to ${to.textContent}`;
  if (caption.dataset.text === text) return;
  caption.dataset.text = text;
  caption.replaceChildren("Showing ", from, " to ", to);
}

export function TimeChart({
  title,
  series,
  units,
  data,
  windowSeconds,
  height = 220,
}: {
  title: string;
  series: ChartSeries[];
  /** Of the axis charted: mm, mm/s… for a linear one, °, °/s… for a rotary one. */
  units: Readonly<Record<Quantity, string>>;
  data: uPlot.AlignedData;
  /** The time axis always spans this window ending now, however much data there is. */
  windowSeconds: number;
  height?: number;
}) {
  const holder = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const dataRef = useRef(data);
  dataRef.current = data;
  const windowRef = useRef(windowSeconds);
  windowRef.current = windowSeconds;
  /** The span dragged across (seconds), held while data arrives, until a double-click. */
  const zoom = useRef<[number, number] | null>(null);

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    let instance: uPlot | null = null;
    const create = () => {
      instance?.destroy();
      element.querySelector("figcaption")?.remove();
      // The canvas says nothing to a screen reader: the span shown, in words and as times.
      const caption = document.createElement("figcaption");
      caption.className = "visually-hidden";
      element.append(caption);
      const text = cssColor("--text-muted", "#667");
      const grid = cssColor("--chart-grid", "#8883");
      const axis = (scale: string, side: 1 | 3): uPlot.Axis => ({
        scale,
        side,
        stroke: text,
        grid: { stroke: grid, width: 1, show: side === 3 },
        ticks: { stroke: grid, width: 1 },
        size: 56,
        values: (_u, ticks) => ticks.map((tick) => `${+tick.toFixed(2)}`),
      });
      const scales = [...new Set(series.map((item) => item.scale))];
      instance = new uPlot(
        {
          width: Math.max(200, element.clientWidth),
          height,
          title: undefined,
          legend: { live: true },
          cursor: { drag: { x: true, y: false } },
          scales: {
            // Live charts show the chosen window ending now, however much data has arrived.
            x: {
              time: true,
              range: () => {
                if (zoom.current) return zoom.current;
                const now = Date.now() / 1000;
                return [now - windowRef.current, now];
              },
            },
          },
          hooks: {
            setScale: [
              (u, key) => {
                if (key === "x") describeSpan(caption, u.scales.x!.min!, u.scales.x!.max!);
              },
            ],
            setSelect: [
              (u) => {
                if (u.select.width <= 0) return;
                zoom.current = [
                  u.posToVal(u.select.left, "x"),
                  u.posToVal(u.select.left + u.select.width, "x"),
                ];
              },
            ],
          },
          axes: [
            {
              stroke: text,
              grid: { stroke: grid, width: 1 },
              ticks: { stroke: grid, width: 1 },
              // At least this many pixels between times: "10:40pm" is about 55 wide, and at
              // uPlot's default (50) the labels ran together.
              space: 90,
            },
            ...scales
              .filter((scale) => scale !== "acceleration")
              .map((scale, index) => ({
                ...axis(scale, index === 0 ? 3 : 1),
                label: units[scale],
                labelSize: 18,
              })),
          ],
          series: [
            {},
            ...series.map((item) => ({
              label: `${item.label} (${units[item.scale]})`,
              stroke: item.color,
              width: 1.5,
              scale: item.scale,
              dash: item.dash,
              show: item.show ?? true,
              value: (_u: uPlot, value: number | null) => (value == null ? "—" : value.toFixed(3)),
            })),
          ],
        },
        dataRef.current,
        element,
      );
      plot.current = instance;
      const chart = instance;
      chart.over.addEventListener("dblclick", () => {
        zoom.current = null;
        chart.setData(dataRef.current);
      });
      // The legend's entries (after the time's) show or hide their series on click; from the
      // keyboard too, with their state announced.
      const entries = [...element.querySelectorAll<HTMLElement>(".u-legend .u-series th")];
      for (const [index, entry] of entries.entries()) {
        if (index === 0) continue;
        const pressed = () => String(chart.series[index]?.show ?? true);
        entry.tabIndex = 0;
        entry.setAttribute("role", "button");
        entry.setAttribute("aria-pressed", pressed());
        entry.addEventListener("click", () => entry.setAttribute("aria-pressed", pressed()));
        entry.addEventListener("keydown", (event) => {
          if (event.key !== "Enter" && event.key !== " ") return;
          event.preventDefault();
          entry.click();
        });
      }
    };
    create();
    const resize = new ResizeObserver(() => {
      instance?.setSize({ width: Math.max(200, element.clientWidth), height });
    });
    resize.observe(element);
    const scheme = window.matchMedia("(prefers-color-scheme: dark)");
    scheme.addEventListener("change", create);
    return () => {
      resize.disconnect();
      scheme.removeEventListener("change", create);
      instance?.destroy();
      plot.current = null;
    };
  }, [height, units]);

  // Choosing another window leaves a zoom: the new window is what was asked for.
  const shownWindow = useRef(windowSeconds);
  useEffect(() => {
    if (shownWindow.current !== windowSeconds) zoom.current = null;
    shownWindow.current = windowSeconds;
    plot.current?.setData(data);
  }, [data, windowSeconds]);

  return <figure class="chart" ref={holder} aria-label={title} />;
}
