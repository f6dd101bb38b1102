#!/usr/bin/env node
// Renders each dashboard's panels from a live Prometheus into one HTML page per dashboard,
// laid out on Grafana's 24-column grid: timeseries as SVG lines (stacked where the panel
// stacks), stat as the reduced last value with its mappings and thresholds, table as rows.
// Grafana cannot run here; this shows what its panels would show, from the same queries.
// Usage: render.js PROMETHEUS_URL START_UNIX_SECONDS OUT_DIR DASHBOARD.json...
// Variables: $app=$PICTURES_APP (default leaky); the overview's $job=$PICTURES_OVERVIEW_JOB
// (default poolwatch, the central one); the others at "All" (.*).
'use strict';
const fs = require('fs');
const path = require('path');

const [promUrl, startArg, outDir, ...files] = process.argv.slice(2);
if (!promUrl || !startArg || !outDir || files.length === 0) {
  console.error('usage: render.js PROMETHEUS_URL START OUT_DIR DASHBOARD.json...');
  process.exit(2);
}
const start = Number(startArg);
const end = Date.now() / 1000;
const step = Math.max(1, Math.round((end - start) / 300));
let vars = {};
function varsFor(d) {
  const v = { __rate_interval: '15s' };
  for (const t of d.templating.list) {
    if (t.type === 'datasource') continue;
    v[t.name] = t.name === 'app' ? process.env.PICTURES_APP || 'leaky' : '.*';
  }
  // The overview shows the central poolwatch: its sidecar would count the same connections again.
  if (d.uid === 'poolwatch-overview') v.job = process.env.PICTURES_OVERVIEW_JOB || 'poolwatch';
  return v;
}

const PALETTE = ['#73BF69', '#F2CC0C', '#8AB8FF', '#FF780A', '#F2495C', '#5794F2', '#B877D9', '#FADE2A', '#37872D', '#C4162A', '#1F60C4', '#8F3BB8'];
const NAMED = { green: '#73BF69', red: '#F2495C', orange: '#FF9830', 'dark-red': '#C4162A', yellow: '#FADE2A', blue: '#5794F2' };
const color = (c) => NAMED[c] || c;
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

function substitute(expr, values) {
  const names = Object.keys(values).sort((a, b) => b.length - a.length);
  let out = expr;
  for (const n of names) out = out.split(`\${${n}}`).join(values[n]).split(`$${n}`).join(values[n]);
  return out;
}

async function api(p) {
  const r = await fetch(promUrl + p);
  const j = await r.json();
  if (j.status !== 'success') throw new Error(`${p}: ${JSON.stringify(j)}`);
  return j.data;
}
const enc = encodeURIComponent;
const rangeQuery = (q) => api(`/api/v1/query_range?query=${enc(q)}&start=${start}&end=${end}&step=${step}`).then((d) => d.result);
const instantQuery = (q) => api(`/api/v1/query?query=${enc(q)}&time=${end}`).then((d) => d.result);

function legend(fmt, metric) {
  if (!fmt || fmt === '__auto') {
    const ls = Object.entries(metric).filter(([k]) => k !== '__name__').map(([k, v]) => `${k}="${v}"`);
    return ls.length ? `{${ls.join(', ')}}` : 'value';
  }
  return fmt.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k) => metric[k] || '').replace(/\s+/g, ' ').trim();
}

function fmtDuration(v) {
  const a = Math.abs(v);
  if (a < 60) return `${v.toFixed(a < 10 ? 1 : 0)} s`;
  if (a < 3600) return `${(v / 60).toFixed(1)} min`;
  if (a < 86400) return `${(v / 3600).toFixed(1)} hour`;
  return `${(v / 86400).toFixed(1)} day`;
}
function fmt(v, unit, decimals) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  const d = (x) => (decimals !== undefined ? x.toFixed(decimals) : Math.abs(x) >= 100 || Number.isInteger(x) ? x.toFixed(0) : x.toFixed(Math.abs(x) < 1 ? 3 : 1).replace(/\.?0+$/, ''));
  if (unit === 'percentunit') return `${(v * 100).toFixed(decimals ?? 1)}%`;
  if (unit === 's') return fmtDuration(v);
  if (unit === 'cps') return `${d(v)} c/s`;
  if (unit === 'reqps') return `${d(v)} req/s`;
  if (unit && unit.startsWith('suffix:')) return `${d(v)}${unit.slice(7)}`;
  if (unit === 'short' && Math.abs(v) >= 1000) return `${(v / 1000).toFixed(1)} K`;
  return d(v);
}
function thresholdColor(p, v) {
  const steps = (p.fieldConfig.defaults.thresholds || { steps: [] }).steps;
  let c = '#73BF69';
  for (const s of steps) if (s.value === null || v >= s.value) c = color(s.color);
  return c;
}
function mapped(p, v) {
  for (const m of p.fieldConfig.defaults.mappings || []) {
    if (m.type === 'value' && m.options[String(v)]) return m.options[String(v)];
  }
  return null;
}
function unitFor(p, name) {
  let unit = p.fieldConfig.defaults.unit;
  for (const o of p.fieldConfig.overrides || []) {
    const m = o.matcher;
    const hit = m.id === 'byName' ? m.options === name : m.id === 'byRegexp' ? new RegExp(m.options.replace(/^\/(.*)\/$/, '$1')).test(name) : false;
    if (hit) for (const pr of o.properties) if (pr.id === 'unit') unit = pr.value;
  }
  return unit;
}
function styleFor(p, name) {
  const s = {};
  for (const o of p.fieldConfig.overrides || []) {
    const m = o.matcher;
    const hit = m.id === 'byRegexp' ? new RegExp(m.options.replace(/^\/(.*)\/$/, '$1')).test(name) : m.id === 'byName' && m.options === name;
    if (!hit) continue;
    for (const pr of o.properties) {
      if (pr.id === 'color') s.color = color(pr.value.fixedColor);
      if (pr.id === 'custom.lineStyle') s.dash = pr.value.dash.join(' ');
      if (pr.id === 'custom.fillOpacity') s.fill = pr.value;
    }
  }
  return s;
}

function timeseriesSvg(p, series, w, h) {
  const pad = { l: 74, r: 10, t: 8, b: 22 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const stacked = p.fieldConfig.defaults.custom.stacking.mode === 'normal';
  const times = [];
  for (let t = start; t <= end; t += step) times.push(Math.round(t / step) * step);
  const idx = new Map(times.map((t, i) => [t, i]));
  const rows = series.map((s) => {
    const ys = new Array(times.length).fill(null);
    for (const [t, v] of s.values) {
      const i = idx.get(Math.round(t / step) * step);
      if (i !== undefined) ys[i] = Number(v);
    }
    return { ...s, ys };
  });
  if (stacked) {
    const acc = new Array(times.length).fill(0);
    for (const r of rows) {
      r.base = acc.slice();
      r.ys = r.ys.map((y, i) => (y === null ? null : (acc[i] += y)));
    }
  }
  const all = rows.flatMap((r) => r.ys.filter((y) => y !== null && Number.isFinite(y)));
  let max = all.length ? Math.max(...all) : 1;
  let min = p.fieldConfig.defaults.min === 0 ? 0 : all.length ? Math.min(0, ...all) : 0;
  if (max === min) max = min + 1;
  max += (max - min) * 0.08;
  const X = (i) => pad.l + (i / Math.max(1, times.length - 1)) * pw;
  const Y = (v) => pad.t + ph - ((v - min) / (max - min)) * ph;
  let svg = `<svg width="${w}" height="${h}" xmlns="http://www.w3.org/2000/svg">`;
  const unit = p.fieldConfig.defaults.unit;
  for (let k = 0; k <= 4; k++) {
    const v = min + ((max - min) * k) / 4;
    svg += `<line x1="${pad.l}" x2="${w - pad.r}" y1="${Y(v)}" y2="${Y(v)}" stroke="#2c3235"/>`;
    svg += `<text x="${pad.l - 6}" y="${Y(v) + 4}" fill="#9fa7b3" font-size="11" text-anchor="end">${esc(fmt(v, unit))}</text>`;
  }
  for (let k = 0; k <= 4; k++) {
    const i = Math.round(((times.length - 1) * k) / 4);
    const d = new Date(times[i] * 1000);
    const label = d.toISOString().slice(11, 19);
    svg += `<text x="${X(i)}" y="${h - 6}" fill="#9fa7b3" font-size="11" text-anchor="middle">${label}</text>`;
  }
  rows.forEach((r, n) => {
    const st = styleFor(p, r.name);
    r.color = st.color || PALETTE[n % PALETTE.length];
    const segs = [];
    let cur = [];
    r.ys.forEach((y, i) => {
      if (y === null || !Number.isFinite(y)) {
        if (cur.length) segs.push(cur);
        cur = [];
      } else cur.push([i, y]);
    });
    if (cur.length) segs.push(cur);
    const fill = st.fill !== undefined ? st.fill : p.fieldConfig.defaults.custom.fillOpacity;
    for (const s of segs) {
      const line = s.map(([i, y]) => `${X(i).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
      if (fill > 0) {
        const base = s.map(([i]) => [i, stacked ? r.base[i] : Math.max(min, 0)]).reverse();
        const poly = line + ' ' + base.map(([i, y]) => `${X(i).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
        svg += `<polygon points="${poly}" fill="${r.color}" fill-opacity="${fill / 100}"/>`;
      }
      svg += `<polyline points="${line}" fill="none" stroke="${r.color}" stroke-width="1.6"${st.dash ? ` stroke-dasharray="${st.dash}"` : ''}/>`;
    }
  });
  return svg + '</svg>';
}

async function renderPanel(p) {
  const unit = p.fieldConfig.defaults.unit;
  if (p.type === 'table') {
    const frames = [];
    for (const t of p.targets) {
      const res = await instantQuery(substitute(t.expr, vars));
      frames.push({ refId: t.refId, res });
    }
    const merged = new Map();
    const labelCols = new Set();
    const multi = p.targets.length > 1;
    for (const f of frames) {
      for (const r of f.res) {
        const key = JSON.stringify(Object.entries(r.metric).sort());
        const row = merged.get(key) || { ...r.metric };
        Object.keys(r.metric).forEach((k) => labelCols.add(k));
        row[multi ? `Value #${f.refId}` : 'Value'] = Number(r.value[1]);
        merged.set(key, row);
      }
    }
    let cols = [...labelCols].sort();
    cols.push(...(multi ? p.targets.map((t) => `Value #${t.refId}`) : ['Value']));
    const org = (p.transformations || []).find((t) => t.id === 'organize');
    const exclude = (org && org.options.excludeByName) || {};
    const rename = (org && org.options.renameByName) || {};
    cols = cols.filter((c) => !exclude[c]);
    const rows = [...merged.values()];
    const sortBy = p.options.sortBy && p.options.sortBy[0];
    if (sortBy) {
      const col = Object.keys(rename).find((k) => rename[k] === sortBy.displayName) || sortBy.displayName;
      rows.sort((a, b) => (sortBy.desc ? -1 : 1) * ((a[col] ?? 0) - (b[col] ?? 0)));
    }
    let html = '<table><tr>' + cols.map((c) => `<th>${esc(rename[c] || c)}</th>`).join('') + '</tr>';
    for (const r of rows.slice(0, 12)) {
      html += '<tr>' + cols.map((c) => {
        const v = r[c];
        const name = rename[c] || c;
        return `<td>${typeof v === 'number' ? esc(fmt(v, unitFor(p, name))) : esc(v === undefined ? '' : v === '' ? '""' : v)}</td>`;
      }).join('') + '</tr>';
    }
    if (rows.length === 0) html += `<tr><td colspan="${cols.length}" class="nodata">No data</td></tr>`;
    return { html: html + '</table>', count: rows.length };
  }
  const series = [];
  for (const t of p.targets) {
    const res = await rangeQuery(substitute(t.expr, vars));
    for (const r of res) series.push({ name: substitute(legend(t.legendFormat, r.metric), vars), values: r.values, metric: r.metric });
  }
  if (p.type === 'stat') {
    const noValue = p.fieldConfig.defaults.noValue || 'No data';
    if (!series.length) return { html: `<div class="stat"><div class="big" style="color:#9fa7b3">${esc(noValue)}</div></div>`, count: 0 };
    const bg = p.options.colorMode === 'background';
    const items = series.map((s) => {
      const last = s.values.length ? Number(s.values[s.values.length - 1][1]) : null;
      const m = mapped(p, last);
      const c = m && m.color ? color(m.color) : thresholdColor(p, last);
      const text = m && m.text ? m.text : fmt(last, unit, p.fieldConfig.defaults.decimals);
      const showName = p.options.textMode === 'value_and_name' || (p.options.textMode === 'auto' && series.length > 1);
      return `<div class="statitem" style="${bg ? `background:${c};color:#fff` : `color:${c}`}">${showName ? `<div class="sname">${esc(s.name)}</div>` : ''}<div class="big">${esc(text)}</div></div>`;
    });
    return { html: `<div class="stat">${items.join('')}</div>`, count: series.length };
  }
  return { series, count: series.length };
}

async function renderDashboard(file) {
  const d = JSON.parse(fs.readFileSync(file, 'utf8'));
  vars = varsFor(d);
  const W = 1400;
  const colW = (W - 16) / 24;
  const rowH = 34;
  let bottom = 0;
  let body = '';
  let counts = [];
  for (const p of d.panels) {
    const g = p.gridPos;
    const x = 8 + g.x * colW;
    const y = 56 + g.y * rowH;
    const w = g.w * colW - 6;
    const h = g.h * rowH - 6;
    bottom = Math.max(bottom, y + h);
    const r = await renderPanel(p);
    counts.push(r.count);
    let inner;
    if (r.series) {
      const legendRows = Math.min(r.series.length, 6);
      const lh = 16 * (legendRows + 1);
      const svgH = h - 30 - lh;
      inner = timeseriesSvg(p, r.series, w - 12, svgH);
      inner += '<table class="legend"><tr><th></th><th>last</th><th>max</th></tr>' + r.series.slice(0, legendRows).map((s, n) => {
        const vals = s.values.map((v) => Number(v[1])).filter(Number.isFinite);
        const c = styleFor(p, s.name).color || PALETTE[n % PALETTE.length];
        const u = unitFor(p, s.name);
        return `<tr><td><span class="sw" style="background:${c}"></span>${esc(s.name)}</td><td>${esc(fmt(vals[vals.length - 1], u))}</td><td>${esc(fmt(vals.length ? Math.max(...vals) : null, u))}</td></tr>`;
      }).join('') + (r.series.length > legendRows ? `<tr><td colspan="3">… ${r.series.length - legendRows} more</td></tr>` : '') + '</table>';
    } else inner = r.html;
    body += `<div class="panel" style="left:${x}px;top:${y}px;width:${w}px;height:${h}px"><div class="title">${esc(p.title)}${p.description ? ' <span class="i">ⓘ</span>' : ''}</div><div class="body">${inner}</div></div>`;
  }
  const varsLine = d.templating.list.map((v) => `<span class="var"><b>${esc(v.label || v.name)}</b> ${esc(v.type === 'datasource' ? 'Prometheus' : vars[v.name] === '.*' ? 'All' : vars[v.name])}</span>`).join('');
  const html = `<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;background:#111217;font-family:Inter,"DejaVu Sans",Helvetica,Arial,sans-serif;color:#ccccdc;width:${W}px;height:${Math.ceil(bottom + 10)}px;position:relative;overflow:hidden}
.top{position:absolute;left:8px;top:8px;right:8px;height:40px;display:flex;align-items:center;gap:12px;font-size:13px}
.top h1{font-size:17px;font-weight:500;margin:0 16px 0 0;color:#fff}
.var{background:#181b1f;border:1px solid #2c3235;padding:4px 8px;border-radius:2px}.var b{color:#6e9fff;font-weight:500;margin-right:4px}
.range{margin-left:auto;color:#9fa7b3}
.panel{position:absolute;background:#181b1f;border:1px solid #2c3235;border-radius:2px;overflow:hidden;box-sizing:border-box}
.title{font-size:13px;font-weight:500;padding:6px 8px;color:#d8d9da;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}.i{color:#6e7079;font-size:11px}
.body{padding:0 6px;font-size:11px}
.stat{display:flex;gap:4px;height:100%;}
.statitem{flex:1;display:flex;flex-direction:column;justify-content:center;align-items:center;border-radius:2px;min-height:${2 * rowH}px}
.big{font-size:26px;font-weight:500}.sname{font-size:11px;opacity:.9}
table{border-collapse:collapse;width:100%}th{color:#6e9fff;font-weight:500;text-align:left;padding:3px 6px;border-bottom:1px solid #2c3235}td{padding:3px 6px;border-bottom:1px solid #22252b}
table.legend td,table.legend th{padding:1px 6px;border:none;font-size:11px}table.legend th{color:#9fa7b3}
.sw{display:inline-block;width:12px;height:3px;margin-right:6px;vertical-align:middle}.nodata{color:#9fa7b3;text-align:center}
</style></head><body><div class="top"><h1>${esc(d.title)}</h1>${varsLine}<span class="range">${esc(new Date(start * 1000).toISOString().slice(11, 19))} to ${esc(new Date(end * 1000).toISOString().slice(11, 19))} UTC · leak demo</span></div>${body}</body></html>`;
  const out = path.join(outDir, `${d.uid}.html`);
  fs.writeFileSync(out, html);
  console.log(`${out} ${W}x${Math.ceil(bottom + 10)} panels=${d.panels.length} series=${counts.join(',')}`);
}

(async () => {
  fs.mkdirSync(outDir, { recursive: true });
  for (const f of files) await renderDashboard(f);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
