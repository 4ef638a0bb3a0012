"""Usage reports as one self-contained HTML page: matplotlib charts inlined as SVG, sortable tables.

Nothing is loaded from elsewhere (no CDN, no fonts, no scripts): the file opens offline and can be
mailed. Tables sort on a header click; `#sort=TABLE_ID:COLUMN:asc|desc` in the URL sorts on load.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import re
from collections import defaultdict
from typing import Callable

from .reports import Report, Row
from .reports_text import GROUP_TITLES, human_bytes, short_time

TOP_CUSTOMERS = 8  # customers drawn separately in the egress chart; the rest are "others"
TOP_IMAGES = 12
CHART_STYLE = {
    "svg.fonttype": "none",  # text stays text: smaller, selectable, drawn with the browser's fonts
    "svg.hashsalt": "authmirror",  # stable ids, so the same report gives the same file
    "font.family": "sans-serif",
    "font.size": 9,
    "text.parse_math": False,  # a '$' in a customer's name is just a '$'
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


# -- charts -----------------------------------------------------------------------------------


def _svg(draw: Callable, width: float, height: float, label: str) -> str:
    """Draw on a fresh matplotlib Figure (no pyplot global state) and return its <svg> element.

    Inline SVGs share the page's id space: each chart's ids get a prefix of their own.
    """
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(CHART_STYLE):
        figure = Figure(figsize=(width, height), layout="constrained")
        draw(figure)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    prefix = re.sub(r"\W+", "-", label.lower()).strip("-") + "-"
    svg = re.sub(r'(\bid="|href="#|url\(#)', lambda m: m.group(1) + prefix, svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)


def _day_range(days: list[str]) -> list[str]:
    """Every day from the first to the last, so quiet days show as gaps, not as missing bars."""
    if not days:
        return []
    first, last = dt.date.fromisoformat(min(days)), dt.date.fromisoformat(max(days))
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def byte_unit(largest: float) -> tuple[str, int]:
    """The unit that keeps the axis numbers readable: (name, bytes per unit)."""
    for power, name in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if largest >= 1024**power:
            return name, 1024**power
    return "bytes", 1


def _stacked_days(figure, series: dict[str, dict[str, int]], names: list[str], unit: str, empty: str, scale: int = 1) -> None:
    from matplotlib.ticker import MaxNLocator

    axes = figure.subplots()
    days = _day_range(list(series))
    if not days or not names:
        axes.text(0.5, 0.5, empty, ha="center", va="center", transform=axes.transAxes, color="#666")
        axes.set_xticks([])
        axes.set_yticks([])
        return
    positions = list(range(len(days)))
    bottom = [0.0] * len(days)
    for index, name in enumerate(names):
        values = [series.get(day, {}).get(name, 0) / scale for day in days]
        label = f" {name}" if name.startswith("_") else name  # matplotlib hides labels starting with '_'
        axes.bar(positions, values, bottom=bottom, width=0.8, label=label, color=PALETTE[index % len(PALETTE)])
        bottom = [b + v for b, v in zip(bottom, values)]
    step = -(-len(days) // 12)  # at most 12 labels
    axes.set_xticks(positions[::step], [day[5:] for day in days[::step]])
    axes.set_ylabel(unit)
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=scale == 1))
    axes.grid(axis="y", color="#ddd", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)


def egress_chart(report: Report) -> str:
    totals: dict[str, int] = defaultdict(int)
    for per_customer in report.daily_egress.values():
        for customer, size in per_customer.items():
            totals[customer] += size
    ranked = sorted(totals, key=lambda c: (-totals[c], c))
    top = ranked[:TOP_CUSTOMERS]
    series: dict[str, dict[str, int]] = {}
    for day, per_customer in report.daily_egress.items():
        folded: dict[str, int] = defaultdict(int)
        for customer, size in per_customer.items():
            folded[customer if customer in top else "others"] += size
        series[day] = folded
    names = top + (["others"] if len(ranked) > TOP_CUSTOMERS else [])
    unit, scale = byte_unit(max((sum(per_day.values()) for per_day in series.values()), default=0))
    draw = lambda figure: _stacked_days(figure, series, names, f"egress ({unit})", "No blob egress in this period", scale)  # noqa: E731
    return _svg(draw, 9, 3.2, "Egress per day per customer")


def top_images_chart(report: Report) -> str:
    rows = [row for row in report.groupings["image"] if row.values["pulls"]][:TOP_IMAGES]

    def draw(figure) -> None:
        axes = figure.subplots()
        if not rows:
            axes.text(0.5, 0.5, "No pulls in this period", ha="center", va="center", transform=axes.transAxes, color="#666")
            axes.set_xticks([])
            axes.set_yticks([])
            return
        names = [row.key for row in reversed(rows)]
        pulls = [row.values["pulls"] for row in reversed(rows)]
        bars = axes.barh(names, pulls, color=PALETTE[0])
        axes.bar_label(bars, labels=[f"{p:,}" for p in pulls], padding=3, fontsize=8)
        axes.set_xlabel("pulls")
        axes.grid(axis="x", color="#ddd", linewidth=0.6)
        axes.set_axisbelow(True)

    return _svg(draw, 9, 0.9 + 0.28 * max(len(rows), 2), "Top images by pulls")


def failures_chart(report: Report) -> str:
    codes = sorted({code for per_code in report.daily_failed_pulls.values() for code in per_code})
    draw = lambda figure: _stacked_days(figure, report.daily_failed_pulls, codes, "failed pulls", "No failed pulls in this period")  # noqa: E731
    return _svg(draw, 9, 2.8, "Failed pulls per day by error code")


# -- tables -----------------------------------------------------------------------------------


def _cell(text: str, sort_value: object = None, css: str = "") -> str:
    value = "" if sort_value is None else f' data-value="{html.escape(str(sort_value))}"'
    klass = f' class="{css}"' if css else ""
    return f"<td{value}{klass}>{html.escape(text)}</td>"


def _table(table_id: str, header: list[tuple[str, str]], rows: list[str], caption: str = "") -> str:
    """header: (title, "num"|"text") pairs; rows: ready <tr> strings."""
    heads = "".join(f'<th data-type="{kind}" scope="col">{html.escape(title)}</th>' for title, kind in header)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    body = "".join(rows) or f'<tr><td colspan="{len(header)}" class="empty">nothing in this period</td></tr>'
    return f'<table class="sortable" id="{table_id}">{cap}<thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>'


def grouping_table(report: Report, grouping: str) -> str:
    rows = report.groupings[grouping]
    header = [(GROUP_TITLES[grouping], "text")] + ([("customer", "text")] if grouping == "license" else [])
    per_customer = grouping in ("customer", "license")  # a count of customers means nothing there
    measures = report.shown_measures
    header += [(m.title, "num") for m in measures] + [("images", "num"), ("versions", "num")] + ([] if per_customer else [("customers", "num")])
    header += [("first seen", "text"), ("last seen", "text")]
    trs = []
    for row in rows:
        cells = [_cell(row.key, row.key)] + ([_cell(row.label, row.label)] if grouping == "license" else [])
        cells += [_cell(human_bytes(row.values[m.name]) if m.unit == "bytes" else f"{row.values[m.name]:,}", row.values[m.name], "num") for m in measures]
        cells += [_cell(str(len(s)), len(s), "num") for s in (row.images, row.versions, *(() if per_customer else (row.customers,)))]
        cells += [_cell(short_time(row.first_seen), row.first_seen), _cell(short_time(row.last_seen), row.last_seen)]
        trs.append(f"<tr>{''.join(cells)}</tr>")
    return _table(f"table-{grouping}", header, trs)


def failures_table(report: Report) -> str:
    header = [("customer", "text"), ("error code", "text"), ("reason", "text"), ("failed pulls", "num"), ("failed requests", "num"), ("first seen", "text"), ("last seen", "text")]
    trs = [
        "<tr>"
        + _cell(f.customer, f.customer) + _cell(f.error_code, f.error_code) + _cell(f.reason, f.reason)
        + _cell(f"{f.failed_pulls:,}", f.failed_pulls, "num") + _cell(f"{f.failures:,}", f.failures, "num")
        + _cell(short_time(f.first_seen), f.first_seen) + _cell(short_time(f.last_seen), f.last_seen)
        + "</tr>"
        for f in report.failures
    ]
    return _table("table-failures", header, trs)


def versions_table(report: Report) -> str:
    header = [("customer", "text"), ("image", "text"), ("running", "text"), ("latest", "text"), ("pulls", "num"), ("last pull", "text")]
    trs = [
        f'<tr{" class=behind" if v.behind else ""}>'
        + _cell(v.customer, v.customer) + _cell(v.image, v.image) + _cell(v.version, v.version) + _cell(v.latest or "-", v.latest or "")
        + _cell(f"{v.pulls:,}", v.pulls, "num") + _cell(short_time(v.last_pull), v.last_pull)
        + "</tr>"
        for v in report.versions
    ]
    return _table("table-versions", header, trs)


# -- page -------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1.5em;color:#222}
h1{margin:0 0 .2em}h2{margin:1.6em 0 .5em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.period{color:#555;margin:0}
.figures{display:flex;flex-wrap:wrap;gap:.8em;margin:1.2em 0}
.figure{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.figure .value{display:block;font-size:1.6em;font-weight:600}.figure .label{color:#555}
figure{margin:1em 0}figcaption{font-weight:600;margin-bottom:.3em}figure svg{max-width:100%;height:auto}
table{border-collapse:collapse;width:100%;margin:.5em 0 1em;font-size:13px}
th,td{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
th{background:#f6f6f6;cursor:pointer;user-select:none;position:sticky;top:0}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num,th[data-type=num]{text-align:right}td.empty{color:#888;text-align:center}
tr.behind td{background:#fff4e5}ul.failures li{margin:.2em 0}
footer{color:#888;font-size:12px;margin-top:2em}
"""

SCRIPT = """
(function(){
  function value(row, col, type){
    var cell = row.cells[col]; var raw = cell.getAttribute('data-value');
    if (raw === null) raw = cell.textContent;
    return type === 'num' ? parseFloat(raw) || 0 : raw.toLowerCase();
  }
  function sortTable(table, col, dir){
    var th = table.tHead.rows[0].cells[col]; var type = th.getAttribute('data-type');
    var body = table.tBodies[0]; var rows = Array.prototype.slice.call(body.rows);
    if (rows.length && rows[0].cells.length <= col) return;
    rows.sort(function(a, b){
      var x = value(a, col, type), y = value(b, col, type);
      return (x < y ? -1 : x > y ? 1 : 0) * (dir === 'asc' ? 1 : -1);
    });
    rows.forEach(function(r){ body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(c){ c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir === 'asc' ? 'ascending' : 'descending');
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function(th, col){
      th.addEventListener('click', function(){
        var dir = th.getAttribute('aria-sort') === 'descending' ? 'asc' : 'desc';
        sortTable(table, col, dir);
      });
    });
  });
  var m = /#sort=([\\w-]+):(\\d+):(asc|desc)/.exec(location.hash);
  if (m && document.getElementById(m[1])) sortTable(document.getElementById(m[1]), +m[2], m[3]);
  document.body.setAttribute('data-ready', 'yes');
})();
"""


def _figure(key: str, value: str, label: str) -> str:
    return f'<div class="figure" data-figure="{key}"><span class="value">{html.escape(value)}</span><span class="label">{html.escape(label)}</span></div>'


def render_html(report: Report) -> str:
    totals = report.totals.values
    period = f"{short_time(report.totals.first_seen)} to {short_time(report.totals.last_seen)} UTC"
    figures = "".join(
        [
            _figure("pulls", f"{totals['pulls']:,}", "pulls"),
            _figure("egress", human_bytes(totals["egress_bytes"]), "egress"),
            *([_figure("saved", human_bytes(totals["saved_bytes"]), "upstream egress saved by the cache")] if report.cache_events else []),
            _figure("failed_pulls", f"{totals['failed_pulls']:,}", "failed pulls"),
            _figure("customers", f"{report.customers:,}", "customers"),
            _figure("images", f"{len(report.totals.images):,}", "images"),
            _figure("old_versions", f"{len(report.old_versions):,}", "on old versions"),
        ]
    )
    failures = "".join(f"<li>{html.escape(f.sentence())}</li>" for f in report.failures[:20])
    sections = [
        f'<section id="charts"><h2>Charts</h2>'
        f'<figure id="chart-egress"><figcaption>Egress per day per customer</figcaption>{egress_chart(report)}</figure>'
        f'<figure id="chart-top-images"><figcaption>Top images by pulls</figcaption>{top_images_chart(report)}</figure>'
        f'<figure id="chart-failures"><figcaption>Failed pulls per day</figcaption>{failures_chart(report)}</figure></section>',
        f'<section id="customers"><h2>Customers</h2>{grouping_table(report, "customer")}</section>',
        f'<section id="failures"><h2>Failures</h2><ul class="failures">{failures}</ul>{failures_table(report)}</section>',
        f'<section id="versions"><h2>Versions in use</h2><p>Highlighted: customers running a lower version than the newest one pulled.</p>{versions_table(report)}</section>',
        f'<section id="images"><h2>Images</h2>{grouping_table(report, "image")}</section>',
        f'<section id="days"><h2>Days</h2>{grouping_table(report, "day")}</section>',
    ]
    if report.by not in ("customer", "image", "day"):
        sections.insert(1, f'<section id="by-{report.by}"><h2>By {GROUP_TITLES[report.by]}</h2>{grouping_table(report, report.by)}</section>')
    skipped = f"; {report.skipped_lines} unreadable lines skipped" if report.skipped_lines else ""
    title = f"authmirror pull report, {period}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f'<header><h1>Pull report</h1><p class="period">{html.escape(period)}</p></header>'
        f'<section id="summary" class="figures">{figures}</section>'
        + "".join(sections)
        + f"<footer>{report.events:,} events from {report.files} file(s){html.escape(skipped)}; generated by authmirror report.</footer>"
        + f"<script>{SCRIPT}</script></body></html>\n"
    )

