"""The insights service's figures for people at a terminal (``facet insights``) and for the run report."""

from __future__ import annotations

from typing import Any

from facet.insights.views import InsightsOverview, RegionInsights
from rich.console import Console
from rich.table import Table


def summarize_insights(document: dict[str, Any], page_url: str, per_field: int = 2) -> dict[str, Any]:
    """The report's insights section: provenance, each region's strongest lifts, the most similar pairs
    and the best opportunity of each pair, from one ``GET /v1/insights``."""
    overview = InsightsOverview.model_validate(document)
    similarity = overview.similarity
    pairs = sorted(((similarity.matrix[i][j], a, b) for i, a in enumerate(similarity.regions)
                    for j, b in enumerate(similarity.regions) if i < j), reverse=True)
    return {
        "page": page_url,
        "model_version": overview.provenance.model_version,
        "versions_compared": overview.provenance.versions_compared,
        "epsilon_spent_by_insights": overview.provenance.epsilon_spent,
        "statistics": overview.provenance.statistics.model_dump(mode="json") if overview.provenance.statistics
        else None,
        "items": overview.items,
        "top_lifts": {r.region: {f.field: [(c.value, round(c.lift, 2)) for c in
                                           sorted(f.cells, key=lambda c: -c.lift)[:per_field]] for f in r.lifts}
                      for r in overview.region_insights},
        "most_similar_pairs": [(a, b, round(v, 3)) for v, a, b in pairs[:3]],
        "opportunities": {f"{o.source}->{o.target}": [(i.item_id, i.label, round(i.expected_lift, 2))
                                                      for i in o.items[:1]] for o in overview.opportunities},
    }


def print_region(console: Console, overview: InsightsOverview, region: RegionInsights) -> None:
    p = overview.provenance
    console.print(f"[bold]{region.region}[/] · model version {p.model_version} loaded {p.loaded_at:%Y-%m-%d %H:%M} UTC"
                  f" · ± = spread over {p.versions_compared} versions · privacy cost {p.epsilon_spent:g}")
    if p.statistics is not None:
        s = p.statistics
        console.print(f"{', '.join(s.fields)} from the regions' noisy interest counts: {s.releases} releases "
                      f"{s.window_start:%Y-%m-%d %H:%M} to {s.window_end:%Y-%m-%d %H:%M} UTC, shopper-level ε "
                      f"{s.epsilon_per_period:g} per {s.period_seconds:g} s at δ {s.delta:g} (± there: the noise)")
    for lifts in region.lifts:
        table = Table(title=f"lift by {lifts.field} (from the {lifts.source})", title_justify="left")
        for column in ("value", "lift", "±", "share", "mix share"):
            table.add_column(column, justify="left" if column == "value" else "right")
        for cell in sorted(lifts.cells, key=lambda c: -c.lift):
            table.add_row(cell.value, f"{cell.lift:.2f}", f"{cell.lift_spread:.2f}", f"{cell.share:.1%}",
                          f"{cell.mix_share:.1%}")
        console.print(table)
    for window, view in region.rising.items():
        table = Table(title=f"rising over the {window} (covered: {view.window_covered_s / 3600:.1f} h, "
                            f"since version {view.since_version})", title_justify="left")
        for column in ("what", "growth", "share before", "share now"):
            table.add_column(column, justify="left" if column == "what" else "right")
        for entry in [*view.attributes, *view.items]:
            table.add_row(entry.label if entry.key.startswith(entry.label) else f"{entry.label} ({entry.key})",
                          f"×{entry.growth:.2f}", f"{entry.share_before:.2%}", f"{entry.share_now:.2%}")
        console.print(table)
    similarity = overview.similarity
    row = similarity.regions.index(region.region)
    table = Table(title="taste similarity", title_justify="left")
    table.add_column("region")
    table.add_column("similarity", justify="right")
    table.add_column("±", justify="right")
    for j, other in sorted(enumerate(similarity.regions), key=lambda e: -similarity.matrix[row][e[0]]):
        if other != region.region:
            table.add_row(other, f"{similarity.matrix[row][j]:.2f}", f"{similarity.spread[row][j]:.2f}")
    console.print(table)
    table = Table(title=f"opportunities from {region.region} (expected lift in the target)", title_justify="left")
    for column in ("into", "piece", "item", "lift", "±"):
        table.add_column(column, justify="right" if column in ("lift", "±") else "left")
    for pair in overview.opportunities:
        if pair.source == region.region:
            for item in pair.items:
                table.add_row(pair.target, item.label, item.item_id, f"×{item.expected_lift:.1f}",
                              f"{item.expected_lift_spread:.1f}")
    console.print(table)
