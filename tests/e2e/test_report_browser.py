"""The HTML report in a real browser (headless Chromium, offline): it renders, and its tables sort."""

from html.parser import HTMLParser

import pytest
from PIL import Image

from authmirror.cli.main import main
from authmirror.reports_html import PALETTE
from tests.support import browser
from tests.unit.test_reports import scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def report_page(tmp_path_factory):
    browser.chromium()  # fails with how to install it, never skips
    work = tmp_path_factory.mktemp("report-browser")
    log = scenario().write(work / "pulls.jsonl")
    page = work / "report.html"
    assert main(["report", "--log", str(log), "--format", "html", "-o", str(page)]) == 0
    return page


def test_report_renders_with_charts(report_page, tmp_path):
    png = browser.screenshot(report_page.as_uri(), tmp_path / "report.png", 1280, 2400)
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, charts and tables, not a blank page
    counts = {colour: n for n, colour in colours}
    bar = tuple(int(PALETTE[0][i:i + 2], 16) for i in (1, 3, 5))
    assert counts.get(bar, 0) > 2000, "the charts' bars were not drawn"
    white = counts.get((255, 255, 255), 0)
    assert white < 0.95 * 1280 * 2400


class RowsOf(HTMLParser):
    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.inside, self.rows, self.cell, self.sorted_by = table_id, False, [], None, None
        self.ready = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body" and attrs.get("data-ready") == "yes":
            self.ready = True
        if tag == "table":
            self.inside = attrs.get("id") == self.table_id
        if self.inside and tag == "th" and attrs.get("aria-sort"):
            self.sorted_by = attrs["aria-sort"]
        if self.inside and tag == "tr":
            self.rows.append([])
        if self.inside and tag == "td":
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.inside = False
        if self.inside and tag == "td" and self.cell is not None:
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_tables_sort_in_the_browser(report_page, direction):
    """The page sorts itself from #sort=TABLE:COLUMN:DIR; column 3 is failed pulls (Hooli 2, unknown 1, others 0)."""
    dom = browser.dump_dom(f"{report_page.as_uri()}#sort=table-customer:3:{direction}")
    parsed = RowsOf("table-customer")
    parsed.feed(dom)
    assert parsed.ready, "the page's script did not run"
    names = [row[0] for row in parsed.rows if row]
    failed = [int(row[3]) for row in parsed.rows if row]
    assert failed == sorted(failed, reverse=direction == "desc")
    assert parsed.sorted_by == ("ascending" if direction == "asc" else "descending")
    assert names[0 if direction == "desc" else -1] == "Hooli"
    assert sorted(names) == ["(unknown license)", "Globex Corp", "Hooli", "Initech"]
