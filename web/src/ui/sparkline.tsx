/** A tiny feed trend: an SVG line, cheap enough for every visible tile. */
export function Sparkline({ values, label }: { values: readonly number[]; label: string }) {
  const width = 120;
  const height = 32;
  if (values.length < 2) {
    return (
      <svg class="sparkline" viewBox={`0 0 ${width} ${height}`} role="img" aria-label={label} />
    );
  }
  const max = Math.max(...values, 1e-9);
  const step = width / (values.length - 1);
  const points = values
    .map(
      (value, i) =>
        `${(i * step).toFixed(1)},${(height - 2 - (value / max) * (height - 4)).toFixed(1)}`,
    )
    .join(" ");
  return (
    <svg
      class="sparkline"
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label={label}
      preserveAspectRatio="none"
    >
      <polyline points={`0,${height} ${points} ${width},${height}`} class="sparkline-fill" />
      <polyline points={points} class="sparkline-line" />
    </svg>
  );
}
