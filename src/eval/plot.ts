/**
 * Line charts as SVG text, with no browser and no dependency: `linePlotSvg(spec)` returns a whole SVG document
 * (the caller writes it to a file). For the analysis plots (alignment metrics per layer, loss curves): one or
 * more panels stacked vertically, each with its own y axis (linear or log) and legend, over one shared x axis.
 *
 * How:
 *   - x domain: every finite point and marker of every panel (so the panels line up); y domain: per panel, its
 *     finite points (log scale: its finite points > 0). Each domain is widened to round ticks,
 *     `niceTicks` (step 1, 2 or 5 × 10^k, about 5 intervals) or `logTicks` (decades); a domain of one value is
 *     first widened by 10% of it (±1 around 0).
 *   - data → pixels: x = left + (x − lo) / (hi − lo) · width, y = bottom − (y − lo) / (hi − lo) · height (on
 *     log10 y for a log axis); coordinates are written with at most 2 decimals.
 *   - each series is drawn in the order of its points: a run of consecutive usable points is a polyline, a
 *     point that is not finite (or ≤ 0 on a log axis) ends the run, leaving a gap; a run of one point is a dot.
 *   - colours: the Tableau-10 palette, assigned to series NAMES in order of first appearance in the spec, so a
 *     name has the same colour in every panel (after 10 names the palette repeats).
 *   - vertical markers (e.g. the align layer): a grey dashed line across the panel, its label on top.
 *   - a panel without a usable point says "no data" (its legend is still drawn).
 *   - tick labels: `formatNumber` (compact: "0.2", "2k", "1e-6").
 * All text is XML-escaped; the output depends only on the spec (same spec → same bytes).
 */

/** One line: points [x, y] in drawing order; non-finite values leave a gap. */
export interface PlotSeries {
  name: string;
  points: readonly (readonly [number, number])[];
  /** Draw the line dashed (e.g. a baseline). Default false. */
  dashed?: boolean;
}

/** A vertical line at `x` across the panel, e.g. the align layer. */
export interface PlotMarker {
  x: number;
  label?: string;
}

/** One chart of the stack: its own y axis and legend. */
export interface PlotPanel {
  yLabel: string;
  /** Log10 y axis (points with y ≤ 0 are skipped, leaving a gap). Default false. */
  logY?: boolean;
  series: readonly PlotSeries[];
  markers?: readonly PlotMarker[];
}

export interface PlotSpec {
  title: string;
  /** Panels from top to bottom, sharing the x axis. At least one. */
  panels: readonly PlotPanel[];
  xLabel: string;
  /** Total width in pixels (default PLOT_DEFAULTS.width). */
  width?: number;
  /** Height of each panel's plot area in pixels (default PLOT_DEFAULTS.panelHeight; grows to fit a long legend). */
  panelHeight?: number;
}

/** The layout in pixels: a panel's plot area spans x from marginLeft to width − marginRight. */
export const PLOT_DEFAULTS = {
  width: 760,
  panelHeight: 220,
  marginLeft: 72,
  /** The legend's column, right of the plot areas. */
  marginRight: 180,
  /** Above the first panel: the title. */
  marginTop: 44,
  /** Between panels: x tick labels of the panel above and room for the next marker label. */
  panelGap: 44,
  /** Below the last panel: its x tick labels and the x-axis label. */
  marginBottom: 52,
  /** Height of one legend entry. */
  legendRow: 16,
} as const;

/** Tableau 10 (matplotlib's default cycle). */
export const PLOT_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"] as const;

// ---- numbers ------------------------------------------------------------------------------------------

/** Trim "1.500" → "1.5", "2.000" → "2" (a fixed or precision string without an exponent). */
function trimZeros(s: string): string {
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

/**
 * A compact label for a number: up to 4 significant digits; 1e-3 ≤ |v| < 1e3 plain ("0.2", "97", "3.142"),
 * 1e3 ≤ |v| < 1e6 in thousands ("2k", "1.5k", "12.35k"), otherwise mantissa and exponent ("1e-6", "2.5e7").
 * 0 (and −0) is "0"; non-finite values are "NaN", "inf", "-inf".
 */
export function formatNumber(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
  if (v === 0) return "0";
  const a = Math.abs(v);
  const sign = v < 0 ? "-" : "";
  // Round to 4 significant digits first, so 999.99 becomes "1k" rather than "1000".
  const r = Number(a.toPrecision(4));
  if (r >= 1e-3 && r < 1e3) return sign + trimZeros(r.toPrecision(4));
  if (r >= 1e3 && r < 1e6) return sign + trimZeros((r / 1e3).toPrecision(4)) + "k";
  const [m, e] = r.toExponential(3).split("e") as [string, string];
  return `${sign}${trimZeros(m)}e${e.replace("+", "")}`;
}

/** Decimals that print every multiple of `step` exactly (step = {1, 2, 5} · 10^k). */
function decimalsOf(step: number): number {
  return Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
}

/**
 * A 1, 2 or 5 × 10^k step for about `target` intervals over `range`: range / target rounded to the nearest of
 * them on a log scale (thresholds √2, √10, √50, as d3's ticks).
 */
function niceStep(range: number, target: number): number {
  const raw = range / target;
  const k = Math.floor(Math.log10(raw));
  const mag = 10 ** k;
  const norm = raw / mag;
  const f = norm >= Math.SQRT2 * 5 ? 10 : norm >= Math.sqrt(10) ? 5 : norm >= Math.SQRT2 ? 2 : 1;
  return Number((f * mag).toPrecision(1));
}

/**
 * Round ticks covering [lo, hi]: a step of 1, 2 or 5 × 10^k giving about `target` intervals, from the largest
 * multiple of the step ≤ lo to the smallest ≥ hi (so the first and last tick are the axis ends). Each tick is
 * rounded to the step's decimals (0.6, not 0.6000000000000001). lo = hi is widened first (by 10% of |lo|,
 * or by 1 around 0). E.g. [0, 1] → 0, 0.2, …, 1; [3, 97] → 0, 20, …, 100.
 */
export function niceTicks(lo: number, hi: number, target = 5): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) throw new RangeError(`niceTicks: the range must be finite, got [${lo}, ${hi}]`);
  if (lo > hi) [lo, hi] = [hi, lo];
  if (lo === hi) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1;
    [lo, hi] = [lo - pad, hi + pad];
  }
  const step = niceStep(hi - lo, target);
  const dec = decimalsOf(step);
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  const out: number[] = [];
  for (let i = first; i <= last; i++) out.push(Number((i * step).toFixed(dec)) + 0); // + 0: no −0
  return out;
}

/**
 * Decade ticks for a log axis covering [lo, hi] (both > 0): 10^a … 10^b with a = floor(log10 lo), b =
 * ceil(log10 hi) (b = a + 1 when they meet); over more than 6 decades every 2nd, 3rd, … decade, so at most
 * about 7 ticks, the axis still ending on a tick.
 */
export function logTicks(lo: number, hi: number): number[] {
  if (!(lo > 0) || !(hi > 0) || !Number.isFinite(lo) || !Number.isFinite(hi)) throw new RangeError(`logTicks: the range must be finite and positive, got [${lo}, ${hi}]`);
  if (lo > hi) [lo, hi] = [hi, lo];
  const a = Math.floor(Math.log10(lo) + 1e-9);
  let b = Math.ceil(Math.log10(hi) - 1e-9);
  if (b <= a) b = a + 1;
  const every = Math.max(1, Math.ceil((b - a) / 6));
  b = a + Math.ceil((b - a) / every) * every;
  const out: number[] = [];
  for (let e = a; e <= b; e += every) out.push(Number(`1e${e}`));
  return out;
}

// ---- SVG ----------------------------------------------------------------------------------------------

/** Escape text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A pixel coordinate: at most 2 decimals, no trailing zeros, no −0. */
const px = (v: number): string => String(Number(v.toFixed(2)) + 0);

interface Axis {
  ticks: number[];
  /** data value → pixel */
  map: (v: number) => number;
}

function linearAxis(ticks: number[], p0: number, p1: number): Axis {
  const lo = ticks[0]!;
  const hi = ticks[ticks.length - 1]!;
  return { ticks, map: (v) => p0 + ((v - lo) / (hi - lo)) * (p1 - p0) };
}

function logAxis(ticks: number[], p0: number, p1: number): Axis {
  const lo = Math.log10(ticks[0]!);
  const hi = Math.log10(ticks[ticks.length - 1]!);
  return { ticks, map: (v) => p0 + ((Math.log10(v) - lo) / (hi - lo)) * (p1 - p0) };
}

const usable = (y: number, log: boolean): boolean => Number.isFinite(y) && (!log || y > 0);

/** Min and max of the values, or null when there are none. */
function extent(values: Iterable<number>): [number, number] | null {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo <= hi ? [lo, hi] : null;
}

function* panelPoints(p: PlotPanel): Generator<readonly [number, number]> {
  const log = p.logY ?? false;
  for (const s of p.series) for (const pt of s.points) if (Number.isFinite(pt[0]) && usable(pt[1], log)) yield pt;
}

function checkSpec(spec: PlotSpec): void {
  const isArray = (v: unknown): boolean => Array.isArray(v);
  if (!spec || !isArray(spec.panels) || spec.panels.length === 0) throw new Error("linePlotSvg: the plot needs at least one panel");
  spec.panels.forEach((p, i) => {
    if (!p || !isArray(p.series)) throw new Error(`linePlotSvg: panel ${i} has no series array`);
    p.series.forEach((s, j) => {
      if (!s || !isArray(s.points)) throw new Error(`linePlotSvg: panel ${i}, series ${j} (${s?.name}) has no points array`);
      s.points.forEach((pt, k) => {
        if (!isArray(pt) || pt.length !== 2) throw new Error(`linePlotSvg: panel ${i}, series "${s.name}", point ${k} is not an [x, y] pair`);
      });
    });
  });
  for (const [what, v, min] of [["width", spec.width, 300], ["panelHeight", spec.panelHeight, 60]] as const)
    if (v !== undefined && !(Number.isFinite(v) && v >= min)) throw new Error(`linePlotSvg: ${what} must be a number ≥ ${min}, got ${v}`);
}

/**
 * The SVG document of a line chart: `spec.title` on top, the panels stacked, the shared x axis labelled under
 * the last one (see the module comment for the layout). Throws a plain Error for a spec without panels or with
 * a point that is not an [x, y] pair; values that are not finite are gaps, not errors.
 */
export function linePlotSvg(spec: PlotSpec): string {
  checkSpec(spec);
  const L = PLOT_DEFAULTS;
  const W = spec.width ?? L.width;
  const x0 = L.marginLeft;
  const x1 = W - L.marginRight;

  // Colours by series name, in order of first appearance.
  const colour = new Map<string, string>();
  for (const p of spec.panels) for (const s of p.series) if (!colour.has(s.name)) colour.set(s.name, PLOT_PALETTE[colour.size % PLOT_PALETTE.length]!);

  // The shared x axis.
  const xs: number[] = [];
  for (const p of spec.panels) {
    for (const pt of panelPoints(p)) xs.push(pt[0]);
    for (const m of p.markers ?? []) if (Number.isFinite(m.x)) xs.push(m.x);
  }
  const xe = extent(xs) ?? [0, 1];
  const xAxis = linearAxis(niceTicks(xe[0], xe[1]), x0, x1);

  // Panel heights: the default, or taller to fit the legend.
  const heights = spec.panels.map((p) => Math.max(spec.panelHeight ?? L.panelHeight, p.series.length * L.legendRow + 8));
  const H = L.marginTop + heights.reduce((a, h) => a + h, 0) + L.panelGap * (spec.panels.length - 1) + L.marginBottom;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${px(W / 2)}" y="24" text-anchor="middle" font-size="14" font-weight="bold">${xmlEscape(spec.title)}</text>`,
  );

  let top = L.marginTop;
  spec.panels.forEach((p, pi) => {
    const h = heights[pi]!;
    const y0 = top;
    const y1 = top + h;
    const log = p.logY ?? false;
    const ye = extent([...panelPoints(p)].map((pt) => pt[1]));
    const yAxis = ye ? (log ? logAxis(logTicks(ye[0], ye[1]), y1, y0) : linearAxis(niceTicks(ye[0], ye[1]), y1, y0)) : null;

    out.push(`<g class="panel" data-panel="${pi}">`);
    // Grid lines under the frame, tick marks and labels outside it.
    const grid: string[] = [];
    const ticks: string[] = [];
    for (const t of xAxis.ticks) {
      const x = px(xAxis.map(t));
      grid.push(`<line x1="${x}" y1="${px(y0)}" x2="${x}" y2="${px(y1)}" stroke="#e6e6e6"/>`);
      ticks.push(`<line x1="${x}" y1="${px(y1)}" x2="${x}" y2="${px(y1 + 4)}" stroke="#333333"/>`);
      ticks.push(`<text x="${x}" y="${px(y1 + 16)}" text-anchor="middle">${xmlEscape(formatNumber(t))}</text>`);
    }
    if (yAxis)
      for (const t of yAxis.ticks) {
        const y = px(yAxis.map(t));
        grid.push(`<line x1="${px(x0)}" y1="${y}" x2="${px(x1)}" y2="${y}" stroke="#e6e6e6"/>`);
        ticks.push(`<line x1="${px(x0 - 4)}" y1="${y}" x2="${px(x0)}" y2="${y}" stroke="#333333"/>`);
        ticks.push(`<text x="${px(x0 - 7)}" y="${px(yAxis.map(t) + 4)}" text-anchor="end">${xmlEscape(formatNumber(t))}</text>`);
      }
    out.push(...grid);
    out.push(`<rect class="plot-area" x="${px(x0)}" y="${px(y0)}" width="${px(x1 - x0)}" height="${px(h)}" fill="none" stroke="#333333"/>`);
    out.push(...ticks);
    const cy = px((y0 + y1) / 2);
    out.push(`<text x="16" y="${cy}" text-anchor="middle" transform="rotate(-90 16 ${cy})">${xmlEscape(p.yLabel)}</text>`);

    // Markers.
    for (const m of p.markers ?? []) {
      if (!Number.isFinite(m.x)) continue;
      const x = px(xAxis.map(m.x));
      out.push(`<line class="marker" x1="${x}" y1="${px(y0)}" x2="${x}" y2="${px(y1)}" stroke="#555555" stroke-dasharray="2 3"/>`);
      if (m.label) out.push(`<text x="${x}" y="${px(y0 - 5)}" text-anchor="middle" fill="#555555">${xmlEscape(m.label)}</text>`);
    }

    // Series.
    if (yAxis)
      for (const s of p.series) {
        const c = colour.get(s.name)!;
        const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
        out.push(`<g class="series" data-name="${xmlEscape(s.name)}">`);
        let run: string[] = [];
        const flush = () => {
          if (run.length === 1) {
            const [x, y] = run[0]!.split(",");
            out.push(`<circle cx="${x}" cy="${y}" r="3" fill="${c}"/>`);
          } else if (run.length > 1) out.push(`<polyline points="${run.join(" ")}" fill="none" stroke="${c}" stroke-width="1.8"${dash}/>`);
          run = [];
        };
        for (const [x, y] of s.points) {
          if (Number.isFinite(x) && usable(y, log)) run.push(`${px(xAxis.map(x))},${px(yAxis.map(y))}`);
          else flush();
        }
        flush();
        out.push(`</g>`);
      }
    else out.push(`<text x="${px((x0 + x1) / 2)}" y="${cy}" text-anchor="middle" fill="#888888">no data</text>`);

    // Legend.
    p.series.forEach((s, i) => {
      const ly = y0 + 4 + i * L.legendRow + L.legendRow / 2;
      const c = colour.get(s.name)!;
      const dash = s.dashed ? ` stroke-dasharray="6 4"` : "";
      out.push(`<line x1="${px(x1 + 12)}" y1="${px(ly)}" x2="${px(x1 + 36)}" y2="${px(ly)}" stroke="${c}" stroke-width="2"${dash}/>`);
      out.push(`<text class="legend" x="${px(x1 + 42)}" y="${px(ly + 4)}">${xmlEscape(s.name)}</text>`);
    });

    out.push(`</g>`);
    top = y1 + L.panelGap;
  });

  const bottom = top - L.panelGap;
  out.push(`<text x="${px((x0 + x1) / 2)}" y="${px(bottom + 38)}" text-anchor="middle">${xmlEscape(spec.xLabel)}</text>`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}
