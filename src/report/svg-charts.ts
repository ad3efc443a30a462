/**
 * Inline SVG charts for the HTML report, generated here so the page opens offline and stays
 * small and diffable (node-platform.md §7.2: a percentile chart with a log axis is ~100 lines by
 * hand against 0.8 MB of vega to inline). Three kinds:
 *  - percentileChart: latency by percentile on the HdrHistogram plotter's log 1/(1-p) axis;
 *  - barChart: grouped bars per category (phases), one bar per series, optional CI whiskers;
 *  - lineChart: values over categories (phases), one line per series.
 * Every chart is an <svg> with the caller's data-* attributes and a <title>, every series a
 * <g data-series="label">, so tests and readers can find them in the DOM.
 */

export const kPalette = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function seriesColor(i: number): string {
  return kPalette[i % kPalette.length]!;
}

export function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function dataAttrs(a: Record<string, string | number>): string {
  return Object.entries(a).map(([k, v]) => ` data-${k}="${esc(String(v))}"`).join('');
}

/** One decimal: coordinates in a 560-wide box need no more, and the file stays small. */
function c(v: number): string {
  return String(Math.round(v * 10) / 10);
}

interface Frame {
  w: number;
  h: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function frame(w: number, h: number, bottomMargin = 48): Frame {
  return { w, h, left: 72, right: w - 30, top: 34, bottom: h - bottomMargin };
}

function open(f: Frame, title: string, attrs: Record<string, string | number>): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${f.w} ${f.h}" width="${f.w}" height="${f.h}" role="img"${dataAttrs(attrs)}>` +
    `<title>${esc(title)}</title><rect width="${f.w}" height="${f.h}" fill="#fff"/>` +
    `<text x="${c(f.w / 2)}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`;
}

/** The legend: one swatch per distinct label, top right inside the plot, 10 to a column. */
function legend(f: Frame, items: { label: string; color: string; dash?: string }[]): string {
  const seen = new Set<string>();
  const uniq = items.filter((i) => !seen.has(i.label) && seen.add(i.label));
  return `<g class="legend">${uniq.map((it, k) => {
    const y = f.top + 8 + (k % 10) * 14;
    const x = f.right - 130 - Math.floor(k / 10) * 130;
    return `<line x1="${c(x)}" y1="${y}" x2="${c(x + 18)}" y2="${y}" stroke="${it.color}" stroke-width="3"${it.dash ? ` stroke-dasharray="${it.dash}"` : ''}/>` +
      `<text x="${c(x + 22)}" y="${y + 4}" font-size="11">${esc(it.label)}</text>`;
  }).join('')}</g>`;
}

/** A log10 scale from [lo, hi] (both > 0) onto [a, b]. */
function logScale(lo: number, hi: number, a: number, b: number): (v: number) => number {
  const l0 = Math.log10(lo);
  const l1 = Math.log10(hi);
  const span = l1 - l0 || 1;
  return (v) => a + ((Math.log10(Math.max(v, lo)) - l0) / span) * (b - a);
}

/** Decades covering [lo, hi]. */
function decades(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

/** A "nice" linear axis top and step for [0, max]; counts get whole-number steps. */
function niceLinear(max: number, integer: boolean): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: integer ? 1 : 0.25 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  if (integer) step = Math.max(1, Math.round(step));
  return { top: Math.ceil(max / step) * step, step };
}

function linearTicks(top: number, step: number): number[] {
  return Array.from({ length: Math.round(top / step) + 1 }, (_, i) => Math.round(i * step * 1e9) / 1e9);
}

function yAxis(f: Frame, ticks: number[], y: (v: number) => number, fmt: (v: number) => string, label: string): string {
  let s = `<g class="y-axis" font-size="10">`;
  for (const t of ticks) {
    s += `<line x1="${f.left}" y1="${c(y(t))}" x2="${f.right}" y2="${c(y(t))}" stroke="#e5e5e5"/>` +
      `<text x="${f.left - 4}" y="${c(y(t) + 3)}" text-anchor="end">${esc(fmt(t))}</text>`;
  }
  const mid = (f.top + f.bottom) / 2;
  return s + `<text x="12" y="${c(mid)}" transform="rotate(-90 12 ${c(mid)})" text-anchor="middle" font-size="11">${esc(label)}</text></g>`;
}

function plotBox(f: Frame): string {
  return `<rect x="${f.left}" y="${f.top}" width="${f.right - f.left}" height="${f.bottom - f.top}" fill="none" stroke="#999"/>`;
}

// ---------------------------------------------------------------------------------------------

export interface PercentileSeries {
  label: string;
  color: string;
  /** x = 1/(1-p) (>= 1), y = latency in ns (> 0); the last point is the maximum (marked). */
  points: { x: number; y: number }[];
  /** Dashed (e.g. one run of several). */
  dash?: string;
}

/** The percentile label of 1/(1-p) = 10^k: 0%, 90%, 99%, 99.9%, … */
export function percentileTickLabel(decade: number): string {
  const k = Math.round(Math.log10(decade));
  if (k === 0) return '0%';
  return `${(100 - 100 / 10 ** k).toFixed(Math.max(0, k - 2))}%`;
}

/** Latency by percentile, the HdrHistogram plotter's view: x log 1/(1-p), y log latency. */
export function percentileChart(o: { title: string; series: PercentileSeries[]; fmtY: (ns: number) => string; attrs: Record<string, string | number> }): string {
  const f = frame(560, 320);
  const pts = o.series.flatMap((s) => s.points);
  const xMax = Math.max(10, 10 ** Math.ceil(Math.log10(Math.max(...pts.map((p) => p.x), 10))));
  const yLo = Math.max(1, Math.min(...pts.map((p) => p.y), Infinity));
  const yHi = Math.max(yLo * 10, ...pts.map((p) => p.y));
  const x = logScale(1, xMax, f.left, f.right);
  const yTicks = decades(yLo, yHi);
  const y = logScale(yTicks[0]!, yTicks[yTicks.length - 1]!, f.bottom, f.top);
  let s = open(f, o.title, { ...o.attrs, series: new Set(o.series.map((x) => x.label)).size }) + yAxis(f, yTicks, y, o.fmtY, 'latency (log)');
  s += `<g class="x-axis" font-size="10">`;
  for (const t of decades(1, xMax)) {
    s += `<line x1="${c(x(t))}" y1="${f.top}" x2="${c(x(t))}" y2="${f.bottom}" stroke="#e5e5e5"/>` +
      `<text x="${c(x(t))}" y="${f.bottom + 14}" text-anchor="middle">${percentileTickLabel(t)}</text>`;
  }
  s += `<text x="${c((f.left + f.right) / 2)}" y="${f.bottom + 32}" text-anchor="middle" font-size="11">percentile (log 1/(1-p) axis)</text></g>`;
  s += plotBox(f);
  for (const se of o.series) {
    if (se.points.length === 0) continue;
    const d = se.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${c(x(p.x))} ${c(y(p.y))}`).join('');
    const last = se.points[se.points.length - 1]!;
    s += `<g data-series="${esc(se.label)}"><path d="${d}" fill="none" stroke="${se.color}" stroke-width="1.5"${se.dash ? ` stroke-dasharray="${se.dash}"` : ''}/>` +
      `<circle cx="${c(x(last.x))}" cy="${c(y(last.y))}" r="2.5" fill="${se.color}"><title>${esc(`${se.label} max ${o.fmtY(last.y)}`)}</title></circle></g>`;
  }
  return s + legend(f, o.series) + '</svg>';
}

export interface BarSeries {
  label: string;
  color: string;
  values: (number | null)[];
  /** Whiskers (e.g. the 95 % CI) per category; null for none. */
  lo?: (number | null)[];
  hi?: (number | null)[];
}

/** Grouped bars: per category one bar per series; log y when values span decades. */
export function barChart(o: { title: string; categories: string[]; series: BarSeries[]; log: boolean; fmtY: (v: number) => string; yLabel: string; attrs: Record<string, string | number> }): string {
  const n = Math.max(1, o.series.length);
  const f = frame(Math.max(560, 90 + o.categories.length * (n * 12 + 18)), 340, 70);
  const vals = o.series.flatMap((s) => [...s.values, ...(s.hi ?? [])]).filter((v): v is number => v !== null && v > 0);
  let y: (v: number) => number;
  let ticks: number[];
  if (o.log) {
    ticks = decades(Math.max(1, Math.min(...vals, Infinity)), Math.max(10, ...vals));
    y = logScale(ticks[0]!, ticks[ticks.length - 1]!, f.bottom, f.top);
  } else {
    const { top, step } = niceLinear(Math.max(0, ...vals), vals.every(Number.isInteger));
    ticks = linearTicks(top, step);
    y = (v) => f.bottom - (v / top) * (f.bottom - f.top);
  }
  const base = o.log ? f.bottom : y(0);
  const slot = (f.right - f.left) / Math.max(1, o.categories.length);
  const bw = Math.min(16, (slot - 8) / n);
  let s = open(f, o.title, { ...o.attrs, series: o.series.length, categories: o.categories.length }) + yAxis(f, ticks, y, o.fmtY, o.yLabel) + plotBox(f);
  s += `<g class="x-axis" font-size="10">`;
  o.categories.forEach((cat, i) => {
    const cx = f.left + slot * (i + 0.5);
    s += `<text x="${c(cx)}" y="${f.bottom + 12}" text-anchor="end" transform="rotate(-30 ${c(cx)} ${f.bottom + 12})">${esc(cat)}</text>`;
  });
  s += '</g>';
  o.series.forEach((se, k) => {
    s += `<g data-series="${esc(se.label)}" fill="${se.color}">`;
    se.values.forEach((v, i) => {
      if (v === null || (o.log && v <= 0)) return;
      const x0 = f.left + slot * i + (slot - bw * n) / 2 + k * bw;
      const top = y(v);
      s += `<rect x="${c(x0)}" y="${c(top)}" width="${c(bw - 1)}" height="${c(Math.max(0.5, base - top))}"><title>${esc(`${se.label} ${o.categories[i]}: ${o.fmtY(v)}`)}</title></rect>`;
      const lo = se.lo?.[i];
      const hi = se.hi?.[i];
      if (lo != null && hi != null && hi > lo) {
        const xm = x0 + (bw - 1) / 2;
        s += `<path d="M${c(xm)} ${c(y(Math.max(lo, o.log ? 1 : 0)))}V${c(y(hi))}M${c(xm - 3)} ${c(y(hi))}h6" stroke="#000" fill="none"/>`;
      }
    });
    s += '</g>';
  });
  return s + legend(f, o.series) + '</svg>';
}

export interface LineSeries {
  label: string;
  color: string;
  dash?: string;
  values: (number | null)[];
}

/** Values over categories (phases) on a linear axis from 0, one marked line per series. */
export function lineChart(o: { title: string; categories: string[]; series: LineSeries[]; fmtY: (v: number) => string; yLabel: string; attrs: Record<string, string | number> }): string {
  const f = frame(Math.max(560, 90 + o.categories.length * 48), 340, 70);
  const vals = o.series.flatMap((s) => s.values).filter((v): v is number => v !== null);
  const { top, step } = niceLinear(Math.max(0, ...vals), vals.every(Number.isInteger));
  const ticks = linearTicks(top, step);
  const y = (v: number) => f.bottom - (v / top) * (f.bottom - f.top);
  const slot = (f.right - f.left) / Math.max(1, o.categories.length);
  const x = (i: number) => f.left + slot * (i + 0.5);
  let s = open(f, o.title, { ...o.attrs, series: o.series.length, categories: o.categories.length }) + yAxis(f, ticks, y, o.fmtY, o.yLabel) + plotBox(f);
  s += `<g class="x-axis" font-size="10">`;
  o.categories.forEach((cat, i) => {
    s += `<text x="${c(x(i))}" y="${f.bottom + 12}" text-anchor="end" transform="rotate(-30 ${c(x(i))} ${f.bottom + 12})">${esc(cat)}</text>`;
  });
  s += '</g>';
  for (const se of o.series) {
    const pts = se.values.map((v, i) => (v === null ? null : { x: x(i), y: y(v), v, i })).filter((p) => p !== null);
    const d = pts.map((p, k) => `${k === 0 ? 'M' : 'L'}${c(p.x)} ${c(p.y)}`).join('');
    s += `<g data-series="${esc(se.label)}"><path d="${d}" fill="none" stroke="${se.color}" stroke-width="2"${se.dash ? ` stroke-dasharray="${se.dash}"` : ''}/>` +
      pts.map((p) => `<circle cx="${c(p.x)}" cy="${c(p.y)}" r="2.5" fill="${se.color}"><title>${esc(`${se.label} ${o.categories[p.i]}: ${o.fmtY(p.v)}`)}</title></circle>`).join('') + '</g>';
  }
  return s + legend(f, o.series) + '</svg>';
}

export interface HeatCell {
  /** The figure the colour encodes; null for a cell without one (failed, missing). */
  value: number | null;
  /** Printed in the cell (the value, or the cell's status). */
  text: string;
  /** The tooltip: which cell, and the exact figure. */
  title: string;
  /** data-* attributes of the cell's rect (its sweep cell id, its status). */
  attrs?: Record<string, string | number>;
}

/** Light yellow to dark blue (ColorBrewer YlGnBu): ordered, readable in grey, no red/green pair. */
const kHeatStops = ['#ffffcc', '#c7e9b4', '#7fcdbb', '#41b6c4', '#1d91c0', '#225ea8', '#0c2c84'];

/** The colour at t in [0, 1], interpolated between the stops. */
export function heatColor(t: number): string {
  const x = Math.min(1, Math.max(0, t)) * (kHeatStops.length - 1);
  const i = Math.min(kHeatStops.length - 2, Math.floor(x));
  const f = x - i;
  const rgb = (h: string) => [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16));
  const a = rgb(kHeatStops[i]!);
  const b = rgb(kHeatStops[i + 1]!);
  return `#${a.map((v, k) => Math.round(v + (b[k]! - v) * f).toString(16).padStart(2, '0')).join('')}`;
}

/**
 * A matrix of values: rows × columns of rects coloured by value (log when the values span more
 * than 20×, so one slow cell does not wash out the rest), the text in each. `domain` shares one
 * scale between small multiples so their colours compare; cells without a value are grey.
 */
export function heatMap(o: {
  title: string; rowLabel: string; colLabel: string; rows: string[]; cols: string[]; cells: HeatCell[][];
  domain?: [number, number]; fmt: (v: number) => string; attrs: Record<string, string | number>;
}): string {
  const vals = o.cells.flat().map((x) => x.value).filter((v): v is number => v !== null && Number.isFinite(v));
  const [lo, hi] = o.domain ?? [Math.min(...vals, Infinity), Math.max(...vals, -Infinity)];
  const log = lo > 0 && hi / lo > 20;
  const t = (v: number): number => {
    if (!(hi > lo)) return 0.5;
    return log ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (v - lo) / (hi - lo);
  };
  const textW = (s: string) => s.length * 6.5;
  const cw = Math.max(64, ...o.cols.map((s) => textW(s) + 10), ...o.cells.flat().map((x) => textW(x.text) + 10));
  const ch = 26;
  const left = Math.max(60, textW(o.rowLabel) + 10, ...o.rows.map((s) => textW(s) + 14));
  const top = 62;
  const w = Math.max(320, left + cw * o.cols.length + 100);
  const h = top + ch * o.rows.length + 24;
  const f: Frame = { w, h, left, right: left + cw * o.cols.length, top, bottom: top + ch * o.rows.length };
  let s = open(f, o.title, { ...o.attrs, rows: o.rows.length, cols: o.cols.length, scale: log ? 'log' : 'linear' });
  s += `<text x="${c((f.left + f.right) / 2)}" y="36" text-anchor="middle" font-size="11" font-style="italic">${esc(o.colLabel)}</text>`;
  s += `<text x="4" y="${top - 6}" font-size="11" font-style="italic">${esc(o.rowLabel)}</text>`;
  o.cols.forEach((col, j) => {
    s += `<text x="${c(left + cw * (j + 0.5))}" y="${top - 6}" text-anchor="middle" font-size="11">${esc(col)}</text>`;
  });
  o.rows.forEach((row, i) => {
    const y = top + ch * i;
    s += `<text x="${left - 6}" y="${c(y + ch / 2 + 4)}" text-anchor="end" font-size="11">${esc(row)}</text>`;
    o.cols.forEach((_, j) => {
      const cell = o.cells[i]?.[j] ?? { value: null, text: '-', title: `${row} / ${o.cols[j]}: no cell` };
      const x = left + cw * j;
      const has = cell.value !== null && Number.isFinite(cell.value);
      const tv = has ? t(cell.value!) : 0;
      const fill = has ? heatColor(tv) : '#eeeeee';
      s += `<rect x="${c(x)}" y="${c(y)}" width="${c(cw)}" height="${ch}" fill="${fill}" stroke="#fff"${dataAttrs(cell.attrs ?? {})}><title>${esc(cell.title)}</title></rect>` +
        `<text x="${c(x + cw / 2)}" y="${c(y + ch / 2 + 4)}" text-anchor="middle" font-size="11" fill="${has ? (tv > 0.55 ? '#fff' : '#000') : '#a00'}">${esc(cell.text)}</text>`;
    });
  });
  // The scale: five steps from lo to hi, beside the matrix.
  if (vals.length > 0) {
    const sx = f.right + 16;
    const step = (f.bottom - f.top) / 5;
    let g = `<g class="scale" font-size="10">`;
    for (let k = 0; k < 5; k++) g += `<rect x="${c(sx)}" y="${c(f.bottom - step * (k + 1))}" width="12" height="${c(step)}" fill="${heatColor((k + 0.5) / 5)}"/>`;
    g += `<text x="${c(sx + 16)}" y="${c(f.bottom)}">${esc(o.fmt(lo))}</text><text x="${c(sx + 16)}" y="${c(f.top + 8)}">${esc(o.fmt(hi))}</text>`;
    s += `${g}${log ? `<text x="${c(sx)}" y="${c(f.bottom + 14)}" font-size="9">log</text>` : ''}</g>`;
  }
  return s + '</svg>';
}
