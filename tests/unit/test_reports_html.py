"""The HTML report: one offline file whose charts, tables and figures say what the log says."""

import re
from html.parser import HTMLParser

from authmirror.cli.main import main
from authmirror.reports import summarise
from authmirror.reports_html import PALETTE, render_html

from .test_reports import APP, DB, cache_scenario, scenario


class Page(HTMLParser):
    """What the structural checks need: elements by id, table rows, figures, references out."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.figures: dict[str, str] = {}
        self.references: list[str] = []
        self.tags: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._figure: str | None = None
        self._in_value = False
        self._text_in: dict[str, list[str]] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href", "xlink:href", "action"):
            if attrs.get(name):
                self.references.append(attrs[name])
        if "id" in attrs:
            self.ids[attrs["id"]] = tag
        if tag in ("figure", "section"):
            self._open.append(attrs.get("id", ""))
            self._text_in.setdefault(attrs.get("id", ""), [])
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "div" and "data-figure" in attrs:
            self._figure = attrs["data-figure"]
        elif tag == "span" and attrs.get("class") == "value" and self._figure:
            self._in_value = True

    def handle_endtag(self, tag):
        if tag in ("figure", "section") and self._open:
            self._open.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "span":
            self._in_value = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_value and self._figure:
            self.figures[self._figure] = data
            self._figure = None
        for open_id in self._open:
            self._text_in[open_id].append(data)

    def text(self, element_id: str) -> str:
        return " ".join(self._text_in.get(element_id, []))


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def test_html_report_has_charts_tables_and_figures(tmp_path, capsys):
    log = scenario().write(tmp_path / "pulls.jsonl")
    out = tmp_path / "report.html"
    assert main(["report", "--log", str(log), "-o", str(out)]) == 0  # .html implies --format html
    text = out.read_text()
    page = parse(text)
    assert {"chart-egress", "chart-top-images", "chart-failures"} <= set(page.ids)
    assert page.tags.count("svg") == 3
    assert page.figures == {"pulls": "7", "egress": "23.1 KiB", "failed_pulls": "3", "customers": "3", "images": "2", "old_versions": "1"}
    # the charts show the data: customers in the egress legend, image names, the failing code
    assert "Globex Corp" in page.text("chart-egress") and "Initech" in page.text("chart-egress")
    assert APP.name in page.text("chart-top-images") and DB.name in page.text("chart-top-images")
    assert "DENIED" in page.text("chart-failures")
    assert f"fill: {PALETTE[0]}" in text  # bars were drawn
    customers = page.tables["table-customer"]
    assert customers[0][:3] == ["customer", "pulls", "egress"]
    assert {row[0]: row[1] for row in customers[1:]} == {"Globex Corp": "4", "Initech": "3", "Hooli": "0", "(unknown license)": "0"}
    failures = page.tables["table-failures"]
    assert failures[1][:4] == ["Hooli", "DENIED", "license for Hooli expired on 2024-01-31", "2"]
    assert "Hooli failed 2 pulls: license for Hooli expired on 2024-01-31 (DENIED)" in page.text("failures")
    versions = page.tables["table-versions"]
    assert ["Globex Corp", APP.name, "1.0", "1.1", "4"] == versions[1][:5]
    assert len(page.tables["table-day"]) == 1 + 2 and len(page.tables["table-image"]) == 1 + 2


def test_html_report_is_self_contained(tmp_path):
    page_text = render_html(summarise(scenario().events, by="license"))
    page = parse(page_text)
    assert all(ref.startswith("#") for ref in page.references), page.references  # only links inside the page
    assert "link" not in page.tags and "img" not in page.tags and "iframe" not in page.tags
    assert "table-license" in page.ids  # --by license adds its table
    assert "@import" not in page_text and not re.search(r"url\((?!#)", page_text)
    ids = re.findall(r'\bid="([^"]+)"', page_text)
    assert len(ids) > 30 and len(set(ids)) == len(ids)  # the inline charts' ids do not clash


def test_html_report_of_an_empty_period(tmp_path):
    page = parse(render_html(summarise([])))
    assert page.figures["pulls"] == "0"
    assert "No pulls in this period" in page.text("chart-top-images")
    assert "No blob egress in this period" in page.text("chart-egress")
    assert page.tables["table-customer"][1] == ["nothing in this period"]


def test_names_are_escaped_and_shown_as_written():
    log = scenario()
    for event in log.events:
        if event.get("customer") == "Initech":
            event["customer"] = "<script>alert(1)</script>"
        elif event.get("customer") == "Globex Corp":
            event["customer"] = "Globex $US$ Corp"  # no math typesetting in chart labels
    text = render_html(summarise(log.events))
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Globex $US$ Corp" in parse(text).text("chart-egress")


def test_html_report_shows_upstream_egress_saved_by_the_cache():
    page = parse(render_html(summarise(cache_scenario().events)))
    assert page.figures["saved"] == "12.5 KiB" and page.figures["egress"] == "19.0 KiB"
    customers = page.tables["table-customer"]
    assert customers[0][:4] == ["customer", "pulls", "egress", "upstream egress saved"]
    assert {row[0]: row[3] for row in customers[1:]} == {"Initech": "9.0 KiB", "Globex Corp": "3.5 KiB"}
    images = page.tables["table-image"]
    assert {row[0]: row[3] for row in images[1:]} == {APP.name: "7.0 KiB", DB.name: "5.5 KiB"}
    # without a cache in the log, no such figure or column (see the first test's exact figures)
    assert "upstream egress saved" not in render_html(summarise(scenario().events))
