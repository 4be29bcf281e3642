import type { RefObject } from "preact";
import { useEffect, useState } from "preact/hooks";

export interface GridWindow {
  columns: number;
  /** Index of the first and one past the last item to render. */
  start: number;
  end: number;
  /** Pixel offset of the first rendered row, and the whole grid's height. */
  offset: number;
  height: number;
}

/**
 * Which tiles of a grid scrolled with the page are on screen (plus a row or two either side),
 * so a fleet of 1,000 machines renders a few dozen tiles.
 */
export function useVirtualGrid(
  ref: RefObject<HTMLElement | null>,
  count: number,
  {
    minWidth,
    rowHeight,
    gap,
    overscan = 2,
  }: { minWidth: number; rowHeight: number; gap: number; overscan?: number },
): GridWindow {
  const [view, setView] = useState({ width: 0, top: 0, viewport: window.innerHeight });

  useEffect(() => {
    const element = ref.current;
    if (!element) return;
    let frame = 0;
    const measure = () => {
      frame = 0;
      const rect = element.getBoundingClientRect();
      setView((old) =>
        old.width === rect.width && old.top === rect.top && old.viewport === window.innerHeight
          ? old
          : { width: rect.width, top: rect.top, viewport: window.innerHeight },
      );
    };
    const schedule = () => {
      if (frame === 0) frame = requestAnimationFrame(measure);
    };
    measure();
    const observer = new ResizeObserver(schedule);
    observer.observe(element);
    window.addEventListener("scroll", schedule, { passive: true });
    window.addEventListener("resize", schedule);
    return () => {
      observer.disconnect();
      window.removeEventListener("scroll", schedule);
      window.removeEventListener("resize", schedule);
      cancelAnimationFrame(frame);
    };
  }, [ref]);

  const columns = Math.max(1, Math.floor((view.width + gap) / (minWidth + gap)));
  const rows = Math.ceil(count / columns);
  const pitch = rowHeight + gap;
  const firstRow = Math.max(0, Math.floor(-view.top / pitch) - overscan);
  const lastRow = Math.min(rows, Math.ceil((view.viewport - view.top) / pitch) + overscan);
  return {
    columns,
    start: Math.min(count, firstRow * columns),
    end: Math.min(count, Math.max(firstRow, lastRow) * columns),
    offset: firstRow * pitch,
    height: Math.max(0, rows * pitch - gap),
  };
}
