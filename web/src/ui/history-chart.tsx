import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { HistorySeries } from "../state/history.ts";

/** Distinct on light and dark backgrounds; a series keeps its colour across the field charts. */
export const seriesColors = [
  "#0e8a96",
  "#d1495b",
  "#d98e04",
  "#5b8c2a",
  "#8e5bd0",
  "#2f6fd0",
  "#c2549d",
  "#6b7f12",
  "#b8612a",
  "#3a9e7a",
];

function cssColor(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/**
 * A downsampled history chart: for each series the bucket average as a line over the band from
 * its minimum to its maximum, so a spike inside a bucket still shows. Dragging across it asks
 * for that span (`onZoom`, epoch ms), which the page re-queries at finer resolution; a
 * double-click asks to go back (`onReset`).
 */
export function HistoryChart({
  title,
  unit,
  series,
  data,
  from,
  to,
  onZoom,
  onReset,
  height = 260,
}: {
  title: string;
  unit: string;
  series: HistorySeries[];
  data: uPlot.AlignedData;
  from: number;
  to: number;
  onZoom: (from: number, to: number) => void;
  onReset: () => void;
  height?: number;
}) {
  const holder = useRef<HTMLDivElement>(null);
  const callbacks = useRef({ onZoom, onReset });
  callbacks.current = { onZoom, onReset };
  // Read when drawing, so new data (a relative window asked again) updates the chart in place:
  // rebuilt each time, it lost the series hidden in its legend and any drag under way.
  const latest = useRef({ data, from, to });
  latest.current = { data, from, to };
  const chart = useRef<uPlot | null>(null);
  const seriesKey = series.map((item) => item.label).join("\n");

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    let instance: uPlot | null = null;
    const create = () => {
      instance?.destroy();
      const text = cssColor("--text-muted", "#667");
      const grid = cssColor("--chart-grid", "#8883");
      const lines: uPlot.Series[] = [];
      const bands: uPlot.Band[] = [];
      series.forEach((item, index) => {
        const color = seriesColors[index % seriesColors.length]!;
        const value = (_u: uPlot, v: number | null) => (v == null ? "—" : v.toFixed(3));
        lines.push(
          { label: `${item.label} avg`, stroke: color, width: 1.75, value, spanGaps: false },
          { label: `${item.label} min`, stroke: `${color}55`, width: 0.75, value },
          { label: `${item.label} max`, stroke: `${color}55`, width: 0.75, value },
        );
        bands.push({ series: [index * 3 + 3, index * 3 + 2], fill: `${color}2e` });
      });
      instance = new uPlot(
        {
          width: Math.max(200, element.clientWidth),
          height,
          legend: { live: true },
          cursor: { drag: { x: true, y: false, setScale: false } },
          scales: {
            x: {
              time: true,
              range: () => [latest.current.from / 1000, latest.current.to / 1000],
            },
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
            {
              stroke: text,
              grid: { stroke: grid, width: 1 },
              ticks: { stroke: grid, width: 1 },
              size: 60,
              label: unit,
              labelSize: 18,
              values: (_u, ticks) => ticks.map((tick) => `${+tick.toFixed(2)}`),
            },
          ],
          series: [{}, ...lines],
          bands,
          hooks: {
            setSelect: [
              (u) => {
                const { left, width } = u.select;
                if (width < 3) return;
                const start = u.posToVal(left, "x") * 1000;
                const end = u.posToVal(left + width, "x") * 1000;
                u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
                callbacks.current.onZoom(Math.round(start), Math.round(end));
              },
            ],
          },
        },
        latest.current.data,
        element,
      );
      chart.current = instance;
      // The band's edges are in the legend's live values on hover; their rows would triple it.
      element.querySelectorAll(".u-legend .u-series").forEach((row, index) => {
        if (index > 0 && (index - 1) % 3 !== 0) (row as HTMLElement).style.display = "none";
      });
      instance.over.addEventListener("dblclick", () => callbacks.current.onReset());
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
      chart.current = null;
    };
  }, [seriesKey, height, unit]);

  useEffect(() => {
    chart.current?.setData(data);
  }, [data, from, to]);

  return <div class="chart history-chart" ref={holder} role="img" aria-label={title} />;
}
