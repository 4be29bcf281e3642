import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface ChartSeries {
  label: string;
  color: string;
  scale: "position" | "velocity" | "acceleration";
  dash?: number[];
  show?: boolean;
}

const units = { position: "mm", velocity: "mm/s", acceleration: "mm/s²" } as const;

function cssColor(name: string, fallback: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

/**
 * A uPlot time chart that is created once and fed with `setData`, so thousands of points at
 * ten updates a second stay smooth. Click a legend entry to show or hide a series.
 */
export function TimeChart({
  title,
  series,
  data,
  windowSeconds,
  height = 220,
}: {
  title: string;
  series: ChartSeries[];
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

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    let instance: uPlot | null = null;
    const create = () => {
      instance?.destroy();
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
                const now = Date.now() / 1000;
                return [now - windowRef.current, now];
              },
            },
          },
          axes: [
            { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
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
  }, [height]);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data, windowSeconds]);

  return <div class="chart" ref={holder} role="img" aria-label={title} />;
}
