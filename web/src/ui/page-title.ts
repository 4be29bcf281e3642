import { useEffect } from "preact/hooks";

/**
 * The tab's title: what the page shows, then "Spindle" ("DMU 50 #07 · Spindle"), so tabs,
 * bookmarks and the browser's history tell pages apart.
 */
export function usePageTitle(...parts: (string | undefined)[]): void {
  const title = [...parts.filter(Boolean), "Spindle"].join(" · ");
  useEffect(() => {
    document.title = title;
  }, [title]);
}
