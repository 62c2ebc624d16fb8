// Summaries of measured delays, shared by the benchmarks.

/** The count, median (p50), p90, p99 and largest of `samples` (nearest rank). */
export function percentiles(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
  return { n: sorted.length, p50: at(50), p90: at(90), p99: at(99), max: sorted.at(-1) };
}
