// Renders an end-to-end bench result (bench/e2e.ts JSON) as one self-contained HTML page with
// inline SVG line charts: no scripts, no external assets, so it opens anywhere and archives well.

export interface Series {
  name: string;
  points: [number, number][];
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563"];

const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] as string);

function niceMax(v: number): number {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A line chart: x in seconds since the start, y as given; vertical markers at step changes. */
export function lineChart(
  title: string,
  yLabel: string,
  series: Series[],
  {
    markers = [],
    log = false,
    xMax: xMaxGiven,
  }: { markers?: { x: number; label: string }[]; log?: boolean; xMax?: number } = {},
): string {
  const W = 860;
  const H = 260;
  const L = 64;
  const R = 16;
  const T = 28;
  const B = 36;
  const all = series.flatMap((s) => s.points);
  // Charts of one report share `xMax`, so their time axes line up.
  const xMax = xMaxGiven ?? Math.max(1, ...all.map((p) => p[0]));
  const ys = all.map((p) => p[1]).filter((y) => Number.isFinite(y));
  const yMaxRaw = Math.max(0, ...ys);
  const yMin = log ? Math.max(0.1, Math.min(...ys.filter((y) => y > 0), 1)) : 0;
  const yMax = log ? 10 ** Math.ceil(Math.log10(Math.max(yMaxRaw, yMin * 10))) : niceMax(yMaxRaw);
  const x = (v: number) => L + ((W - L - R) * v) / xMax;
  const y = (v: number) => {
    if (log) {
      const lv = Math.log10(Math.max(v, yMin));
      return T + (H - T - B) * (1 - (lv - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin)));
    }
    return T + (H - T - B) * (1 - v / yMax);
  };
  const ticks = log
    ? Array.from({ length: Math.round(Math.log10(yMax / yMin)) + 1 }, (_, i) => yMin * 10 ** i)
    : [0, 0.25, 0.5, 0.75, 1].map((f) => f * yMax);
  const grid = ticks
    .map(
      (t) =>
        `<line x1="${L}" x2="${W - R}" y1="${y(t)}" y2="${y(t)}" stroke="#e5e7eb"/><text x="${L - 6}" y="${y(t) + 4}" text-anchor="end" font-size="11">${t >= 1000 ? `${t / 1000}k` : Number(t.toPrecision(3))}</text>`,
    )
    .join("");
  const xticks = Array.from({ length: 6 }, (_, i) => (xMax * i) / 5)
    .map((t) => `<text x="${x(t)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${Math.round(t)}s</text>`)
    .join("");
  const marks = markers
    .map(
      (m) =>
        `<line x1="${x(m.x)}" x2="${x(m.x)}" y1="${T}" y2="${H - B}" stroke="#9ca3af" stroke-dasharray="3,3"/><text x="${x(m.x) + 3}" y="${T + 10}" font-size="10" fill="#6b7280">${esc(m.label)}</text>`,
    )
    .join("");
  const lines = series
    .map((s, i) => {
      const pts = s.points
        .filter((p) => Number.isFinite(p[1]))
        .map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`);
      return `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.6" points="${pts.join(" ")}"/>`;
    })
    .join("");
  const legend = series
    .map(
      (s, i) =>
        `<rect x="${L + 8 + i * 130}" y="8" width="10" height="10" fill="${COLORS[i % COLORS.length]}"/><text x="${L + 22 + i * 130}" y="17" font-size="12">${esc(s.name)}</text>`,
    )
    .join("");
  return `<figure><figcaption>${esc(title)}</figcaption><svg viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif">
<text x="14" y="${T + (H - T - B) / 2}" font-size="11" transform="rotate(-90 14 ${T + (H - T - B) / 2})" text-anchor="middle">${esc(yLabel)}</text>
${grid}${xticks}${marks}${lines}${legend}<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#111"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#111"/></svg></figure>`;
}

export function table(rows: Record<string, string | number>[]): string {
  if (rows.length === 0) return "";
  const cols = Object.keys(rows[0] as object);
  const cell = (v: string | number) => {
    const s = String(v);
    const cls = s === "PASS" ? ' class="pass"' : s === "FAIL" ? ' class="fail"' : "";
    return `<td${cls}>${esc(s)}</td>`;
  };
  return `<table><thead><tr>${cols.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead><tbody>${rows
    .map((r) => `<tr>${cols.map((c) => cell(r[c] as string | number)).join("")}</tr>`)
    .join("")}</tbody></table>`;
}

export function page(title: string, sections: string[]): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>
body{font-family:system-ui,sans-serif;margin:24px;max-width:960px;color:#111}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d1d5db;padding:4px 8px;text-align:right}
th{background:#f3f4f6}td.pass{background:#dcfce7}td.fail{background:#fee2e2}
figure{margin:12px 0}figcaption{font-weight:600;font-size:14px;margin-bottom:4px}p{font-size:14px;line-height:1.45}
</style></head><body><h1>${esc(title)}</h1>${sections.join("\n")}</body></html>`;
}
