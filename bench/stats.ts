/** Percentiles and the table the benchmark prints and writes. */

/** One measured series: durations in milliseconds. */
export interface Series {
  name: string;
  samples: number[];
}

/** The q-quantile (0..1) of `xs` by nearest rank. */
export function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank]!;
}

export interface Row {
  what: string;
  n: number;
  p50: number;
  p99: number;
  /** CPU time per run across the bench's process tree (control plane, client, runner, helpers, sandboxes), ms. */
  cpuMs?: number;
  /** The baseline row this one is compared with, by its `what`. */
  baseline?: string;
  /** The target, as text, and whether it is met. */
  target?: string;
  met?: boolean;
}

/** Formats a millisecond figure with sensible precision. */
export function ms(x: number): string {
  return x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0);
}

/** A Markdown table of the rows, with each row's p50 ratio to its baseline. */
export function markdownTable(rows: Row[]): string {
  const byName = new Map(rows.map((r) => [r.what, r]));
  const lines = ['| measurement | n | p50 ms | p99 ms | CPU ms per call | vs baseline (p50) | target | met |', '|---|---:|---:|---:|---:|---|---|---|'];
  for (const r of rows) {
    const base = r.baseline ? byName.get(r.baseline) : undefined;
    const ratio = base ? `${(r.p50 / base.p50).toFixed(2)}× ${base.what}` : '';
    lines.push(`| ${r.what} | ${r.n} | ${ms(r.p50)} | ${ms(r.p99)} | ${r.cpuMs === undefined ? '' : ms(r.cpuMs)} | ${ratio} | ${r.target ?? ''} | ${r.met === undefined ? '' : r.met ? 'yes' : '**no**'} |`);
  }
  return lines.join('\n');
}
