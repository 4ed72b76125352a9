"""The one page a merchandiser reads: server-rendered HTML with inline SVG charts, no script library.

Every chart cell carries its figure in ``data-*`` attributes as well as on screen, so the browser test can
check what is drawn against the API. The page asks for the model version every 15 s and reloads itself
when a newer one has been loaded."""

from __future__ import annotations

import math
from html import escape

from facet.insights.views import InsightsOverview, Provenance, RegionInsights

CELL, LABEL_W, HEADER_H = 44, 56, 130


def _colour(log_ratio: float, scale: float = math.log(3.0)) -> str:
    """Diverging colour: blue below the mix, white at it, red above (saturating at 3x either way)."""
    t = max(-1.0, min(1.0, log_ratio / scale))
    if t >= 0:
        return f"rgb(255,{round(255 - 155 * t)},{round(255 - 175 * t)})"
    return f"rgb({round(255 + 175 * t)},{round(255 + 105 * t)},255)"


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def heatmap(overview: InsightsOverview) -> str:
    """Regions × attribute values, coloured by lift; columns grouped by field."""
    first = overview.region_insights[0]
    columns = [(f.field, cell.value) for f in first.lifts for cell in f.cells]
    width, height = LABEL_W + CELL * len(columns), HEADER_H + CELL * len(overview.region_insights)
    parts = [f'<svg id="lift-heatmap" class="chart" width="{width}" height="{height}" role="img" '
             f'aria-label="Preference lift by region and attribute">']
    for c, (field, value) in enumerate(columns):
        x = LABEL_W + c * CELL + CELL / 2
        parts.append(f'<text class="col" x="{x}" y="{HEADER_H - 6}" transform="rotate(-60 {x} {HEADER_H - 6})">'
                     f'{escape(field)}: {escape(value)}</text>')
    for r, insights in enumerate(overview.region_insights):
        y = HEADER_H + r * CELL
        parts.append(f'<text class="row" x="4" y="{y + CELL / 2 + 4}">{escape(insights.region)}</text>')
        cells = {(f.field, cell.value): cell for f in insights.lifts for cell in f.cells}
        for c, key in enumerate(columns):
            cell = cells.get(key)
            if cell is None:
                continue
            x = LABEL_W + c * CELL
            tip = (f"{insights.region} · {key[0]} {key[1]}: lift {cell.lift:.2f} ± {cell.lift_spread:.2f}, "
                   f"share {cell.share:.1%} against {cell.mix_share:.1%} in the mix")
            parts.append(
                f'<g class="cell" data-region="{escape(insights.region)}" data-field="{escape(key[0])}" '
                f'data-value="{escape(key[1])}" data-lift="{cell.lift:.6g}">'
                f'<rect x="{x}" y="{y}" width="{CELL - 2}" height="{CELL - 2}" '
                f'fill="{_colour(math.log(max(cell.lift, 1e-6)))}"><title>{escape(tip)}</title></rect>'
                f'<text x="{x + CELL / 2 - 1}" y="{y + CELL / 2 + 4}" text-anchor="middle">{_fmt(cell.lift)}</text>'
                f'</g>')
    parts.append("</svg>")
    return "".join(parts)


def similarity_matrix(overview: InsightsOverview) -> str:
    view = overview.similarity
    size = len(view.regions)
    width = height = LABEL_W + CELL * size
    parts = [f'<svg id="similarity" class="chart" width="{width}" height="{height + 20}" role="img" '
             f'aria-label="Taste similarity between regions">']
    for i, region in enumerate(view.regions):
        parts.append(f'<text class="col" x="{LABEL_W + i * CELL + CELL / 2}" y="14" text-anchor="middle">'
                     f'{escape(region)}</text>')
        parts.append(f'<text class="row" x="4" y="{20 + i * CELL + CELL / 2 + 4}">{escape(region)}</text>')
        for j, other in enumerate(view.regions):
            value = view.matrix[i][j]
            x, y = LABEL_W + j * CELL, 20 + i * CELL
            tip = f"{region} ~ {other}: {value:.2f} ± {view.spread[i][j]:.2f}"
            parts.append(
                f'<g class="sim" data-a="{escape(region)}" data-b="{escape(other)}" data-similarity="{value:.6g}">'
                f'<rect x="{x}" y="{y}" width="{CELL - 2}" height="{CELL - 2}" fill="{_colour(value, 1.0)}">'
                f'<title>{escape(tip)}</title></rect>'
                f'<text x="{x + CELL / 2 - 1}" y="{y + CELL / 2 + 4}" text-anchor="middle">{_fmt(value)}</text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _rising(insights: RegionInsights) -> str:
    rows = []
    for window, view in insights.rising.items():
        if view.since_version is None:
            rows.append(f"<p class='muted'>{window}: one model version so far, nothing to compare yet</p>")
            continue
        hours = view.window_covered_s / 3600
        entries = "".join(
            f"<li data-key='{escape(e.key)}' data-growth='{e.growth:.6g}'>{escape(e.label)} "
            f"<b>×{e.growth:.2f}</b> <span class='muted'>({e.share_before:.2%} → {e.share_now:.2%})</span></li>"
            for e in [*view.attributes[:4], *view.items[:4]])
        rows.append(f"<p><b>{window}</b> <span class='muted'>since version {view.since_version}, "
                    f"{hours:.1f} h covered</span></p><ul>{entries}</ul>")
    return (f"<div class='region-card' data-region='{escape(insights.region)}'>"
            f"<h3>{escape(insights.region)}</h3>{''.join(rows)}</div>")


def opportunities_table(overview: InsightsOverview) -> str:
    blocks = []
    for source in overview.regions:
        rows = []
        for view in (v for v in overview.opportunities if v.source == source):
            items = ", ".join(
                f"<span class='opp' data-item='{escape(o.item_id)}' data-lift='{o.expected_lift:.6g}'>"
                f"{escape(o.label)} <code>{escape(o.item_id)}</code> ×{o.expected_lift:.1f}</span>"
                for o in view.items[:3])
            rows.append(f"<tr data-source='{escape(view.source)}' data-target='{escape(view.target)}'>"
                        f"<td>→ {escape(view.target)}</td><td>{items}</td></tr>")
        blocks.append(f"<details><summary>from <b>{escape(source)}</b></summary><table>{''.join(rows)}</table>"
                      f"</details>")
    return "".join(blocks)


_STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1800px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px} h3{margin:4px 0}
.muted{color:#777} .chart text{font-size:11px} .chart .col,.chart .row{font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px} .region-card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;
min-width:260px} .region-card ul{margin:4px 0;padding-left:18px} table{border-collapse:collapse}
td{padding:3px 8px;border-bottom:1px solid #eee;vertical-align:top} code{font-size:11px;color:#555}
"""

_POLL = """
<script>
const shown = %s;
setInterval(async () => {
  try {
    const r = await fetch('/v1/insights/version', {credentials: 'same-origin'});
    if (r.ok) { const v = await r.json(); if (v.model_version !== shown) location.reload(); }
  } catch (e) {}
}, 15000);
</script>"""


def _statistics_note(p: Provenance) -> str:
    s = p.statistics
    if s is None:
        return " · from the model alone: no raw events, no privacy cost beyond the model's"
    hours = s.period_seconds / 3600
    return (f" · {escape(', '.join(s.fields))} from the regions' noisy interest counts ({s.releases} releases, "
            f"{s.window_start:%Y-%m-%d %H:%M} to {s.window_end:%Y-%m-%d %H:%M} UTC; ± there is the noise), "
            f"costing shopper-level ε {s.epsilon_per_period:g} per {hours:g} h at δ {s.delta:g}; "
            "the rest from the model alone: no raw events")


def render_page(overview: InsightsOverview | None, regions: list[str]) -> str:
    if overview is None:
        body = ("<p>No global model has arrived yet; this page reloads when one does.</p>"
                f"<p class='muted'>Regions: {escape(', '.join(regions))}</p>")
        return _document(body, "null")
    p = overview.provenance
    body = (
        f"<h1>Cross-border preferences</h1><p class='muted' id='provenance' data-version='{p.model_version}'>"
        f"Global model version {p.model_version} (epoch {p.model_epoch}), loaded {p.loaded_at:%Y-%m-%d %H:%M:%S} "
        f"UTC · {overview.items} items · ± figures are the spread over the last {p.versions_compared} versions"
        f"{_statistics_note(p)}</p>"
        "<h2>Preference lift by region (1.00 = the mix of all regions; red: buys more, blue: less)</h2>"
        f"{heatmap(overview)}"
        "<h2>Which markets share tastes</h2>"
        f"{similarity_matrix(overview)}"
        "<h2>Rising</h2>"
        f"<div class='cards'>{''.join(_rising(r) for r in overview.region_insights)}</div>"
        "<h2>Export opportunities (strong in one market, not yet established in the other; × expected lift)</h2>"
        f"{opportunities_table(overview)}")
    return _document(body, str(p.model_version))


def render_login() -> str:
    body = """<h1>Facet insights</h1><p>Sign in with your insights key.</p>
<form id="login"><input id="key" type="password" autocomplete="current-password" size="48">
<button>Sign in</button></form><p id="error" class="muted"></p>
<script>
document.getElementById('login').addEventListener('submit', async (e) => {
  e.preventDefault();
  const r = await fetch('/v1/session', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify({key: document.getElementById('key').value})});
  if (r.ok) location.reload(); else document.getElementById('error').textContent = 'That key may not read insights.';
});
</script>"""
    return _document(body, None)


def _document(body: str, shown_version: str | None) -> str:
    poll = _POLL % shown_version if shown_version is not None else ""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Facet insights</title>"
            f"<style>{_STYLE}</style></head><body>{body}{poll}</body></html>")
