/** Small statistics for the benchmark: medians, nearest-rank percentiles, ratios. Pure. */

/** Wall-clock milliseconds with sub-millisecond resolution (comparable across the process). */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Nearest-rank percentile (p in 0..100): the smallest value with at least p% of the values at or below it. */
export function percentile(xs: readonly number[], p: number): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(rank, s.length) - 1]!;
}

export function ratio(a: number, b: number): number {
  return Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? a / b : Number.NaN;
}

/** Median of the per-round ratios a[i]/b[i] (rounds paired by index; interleaving makes the pairs fair). */
export function pairedRatio(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  const rs: number[] = [];
  for (let i = 0; i < n; i++) rs.push(ratio(a[i]!, b[i]!));
  return median(rs);
}

export function round(x: number, digits = 1): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly min: number;
  readonly max: number;
}

export function summary(xs: readonly number[], digits = 1): Summary {
  const ok = xs.filter((x) => Number.isFinite(x));
  return {
    n: ok.length,
    p50: round(percentile(ok, 50), digits),
    p99: round(percentile(ok, 99), digits),
    min: round(ok.length ? Math.min(...ok) : Number.NaN, digits),
    max: round(ok.length ? Math.max(...ok) : Number.NaN, digits),
  };
}
