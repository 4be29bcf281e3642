import { useCallback, useEffect, useRef, useState } from "preact/hooks";

export interface Query<T> {
  data: T | undefined;
  error: Error | undefined;
  loading: boolean;
  reload: () => void;
}

/**
 * Loads once per change of `deps`, and again `refreshMs` after each load ends, if given; keeps
 * the last good data while reloading, and the error for the page to show (never swallowed).
 * (Counted from the end: counted from the start, a load slower than `refreshMs` was replaced
 * by the next before it could finish, and the page never left "Loading".)
 */
export function useQuery<T>(load: () => Promise<T>, deps: unknown[], refreshMs?: number): Query<T> {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;

  useEffect(() => {
    let current = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const settled = () => {
      setLoading(false);
      if (refreshMs) timer = setTimeout(() => setTick((n) => n + 1), refreshMs);
    };
    setLoading(true);
    loadRef.current().then(
      (value) => {
        if (!current) return;
        setData(value);
        setError(undefined);
        settled();
      },
      (failure: Error) => {
        if (!current) return;
        setError(failure);
        settled();
      },
    );
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [...deps, tick]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, loading: loading && data === undefined, reload };
}
