"""`lineage report`: one self-contained HTML page built from a real store's record, checked in a real browser.

The store is real and small: G000 promoted, G001-a frozen FAIL over its step budget, G002-b promoted,
then a rollback to G000 and an approved change, both with hostile reasons. Headless Chromium renders
the page (DOM and screenshot); without Chromium the browser test fails, naming the install
(`make test` installs it where it runs as root).
"""

from __future__ import annotations

import html
import json
import shutil
import struct
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from conftest import clone_store, lineage, relaxed_tiny, sh, trained_g000

from lineage.core.errors import UsageError
from lineage.ui import report as rep

pytestmark = pytest.mark.slow

HOSTILE = '"><script>alert("owned")</script><img src=https://evil.invalid/x.png onerror=alert(1)>'
TINY = relaxed_tiny(12, 8, budget_steps=16)
PASS_FILL, FAIL_FILL = (0xC8, 0xE6, 0xC9), (0xFF, 0xCD, 0xD2)  # rep.FILLS: the tree's candidate boxes


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    store = clone_store(trained_g000(tmp_path_factory, TINY), tmp_path_factory.mktemp("report") / "luna")
    assert lineage(store, "propose", "-S", "train.max_steps=20", check=False).returncode == 1  # G001-a: budget
    lineage(store, "propose", "--name", "b")
    lineage(store, "promote", "candidates/G002-b")
    lineage(store, "rollback", "--to", "G000", "--reason", HOSTILE)
    params = yaml.safe_load((store / "params.yaml").read_text())
    params["evolve"]["k"] = 2
    (store / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "add", "params.yaml"], store)
    lineage(store, "change", "--reason", HOSTILE)
    return store


@pytest.fixture(scope="module")
def page(store) -> tuple[Path, str]:
    proc = lineage(store, "report")
    path = Path(proc.stdout.strip().removeprefix("report: "))
    return path, path.read_text(encoding="utf-8")


def require_browser() -> str:
    """Chromium's path; the browser test fails (never skips) when it is not installed."""
    try:
        return rep.find_browser()
    except UsageError:
        pytest.fail("no headless Chromium on PATH: apt-get install chromium (make test installs it as root)")


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


def parse(markup: str) -> Tags:
    parser = Tags()
    parser.feed(markup)
    return parser


def png_colours(path: Path, wanted: set[tuple]) -> tuple[int, int, set]:
    """(width, height, colours seen): decode the PNG row by row until every wanted colour turned up."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour_type, _, _, interlace = header
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, f"unexpected PNG format {header}"
    bpp = 3 if colour_type == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    previous, seen = bytearray(stride), set()
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = previous[i]
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 255
            elif kind == 4:
                c = previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        seen.update(tuple(line[i:i + 3]) for i in range(0, stride, bpp))
        previous = line
        if wanted <= seen:
            break
    return width, height, seen


# ------------------------------------------------------------------ the record, as data


def test_json_carries_the_record_candidates_history_budget_and_loss_curves(store):
    report = json.loads(lineage(store, "--json", "report").stdout)
    data = report["data"]
    rows = {c["name"]: c for c in data["candidates"]}
    assert sorted(rows) == ["G000-a", "G001-a", "G002-b"]
    assert [(rows[n]["verdict"], rows[n]["promoted"]) for n in sorted(rows)] == [
        ("PASS", True), ("FAIL", False), ("PASS", True)]
    assert data["head"]["generation"] == "G000" and rows["G000-a"]["head"]
    assert [(h["kind"], h["generation"]) for h in data["history"]] == [
        ("promotion", "G000"), ("promotion", "G002"), ("rollback", "G000")]
    assert data["history"][-1]["reason"] == " ".join(HOSTILE.split())
    failed = rows["G001-a"]
    assert failed["failed"] == ["budget.steps"] and "max_steps" in failed["reason"]
    # The failed run left no metrics of its own: nothing inherited from G000 passes for its evidence.
    assert failed["metrics"] is None and failed["criteria"] == [] and failed["card"] is None
    steps = next(b for b in failed["budget"] if b["name"] == "steps")
    assert steps["used"] > steps["limit"] == 16
    assert all(len(c["loss_curve"]) > 1 for c in rows.values())  # G001-a's from its failure record
    g002 = rows["G002-b"]["metrics"]
    assert g002["parent"]["recall_by_delta"] and set(g002["recall_by_delta"]) >= set(g002["parent"]["recall_by_delta"])
    assert rows["G002-b"]["card"].startswith("---") and "PASS" in rows["G002-b"]["card"]
    assert {e["event"] for e in data["events"]} >= {"PROPOSE", "REJECT", "COMMIT", "ROLLBACK", "APPROVE"}
    assert report["path"] == str(store / ".lineage" / "report.html")


# ------------------------------------------------------------------ the page


def test_default_report_lands_in_the_git_ignored_lineage_dir_and_leaves_the_tree_clean(store, page):
    path, _ = page
    assert path == store / ".lineage" / "report.html" and path.is_file()
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], store).stdout == ""


def test_page_is_self_contained_no_script_no_external_reference(page):
    _, markup = page
    tags = parse(markup)
    names = {t for t, _ in tags.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "base"}, names
    for tag, attrs in tags.tags:
        for key, value in attrs.items():
            if key in ("src", "href", "xlink:href", "action", "srcset") or key.startswith("on"):
                raise AssertionError(f"<{tag} {key}={value!r}> would reach outside the page or run code")
    assert "@import" not in markup and "url(" not in markup
    assert "default-src 'none'" in markup  # the browser itself refuses anything fetched


def test_hostile_reasons_from_commits_and_the_log_are_escaped(page):
    _, markup = page
    assert HOSTILE not in markup and "<script" not in markup.lower()
    assert html.escape(" ".join(HOSTILE.split()), quote=True) in markup  # in the tree, events, table
    assert any(HOSTILE in t for t in parse(markup).text)  # shown to the reader as text


def test_page_draws_every_generation_candidate_rollback_and_chart(page):
    _, markup = page
    tags = parse(markup).tags
    main = [(a["class"], a["data-generation"]) for t, a in tags if t == "g" and "main-node" in a.get("class", "")]
    assert main == [("main-node promotion", "G000"), ("main-node promotion", "G002"),
                    ("main-node rollback head", "G000")]
    boxes = {a["data-candidate"]: a["class"] for t, a in tags if t == "g" and "candidate" in a.get("class", "").split()}
    assert boxes == {"G000-a": "candidate PASS", "G001-a": "candidate FAIL", "G002-b": "candidate PASS"}
    assert sum(t == "path" and a.get("class") == "rollback-arc" for t, a in tags) == 1
    svg_classes = [a.get("class", "") for t, a in tags if t == "svg"]
    for key, _, _ in rep.METRICS:
        assert f"metric-chart metric-{key}" in svg_classes
    assert {"tree", "delta-heatmap", "loss-chart", "budget"} <= set(svg_classes)
    assert sum(t == "path" and a.get("class") == "threshold" for t, a in tags) == 4
    assert sum(t == "polyline" and a.get("class") == "loss-curve" for t, a in tags) == 3
    assert sum(t == "g" and a.get("class") == "budget-bar" for t, a in tags) == 3 * len(rep.BUDGET)
    assert {a["data-delta"] for t, a in tags if t == "g" and a.get("class") == "delta-cell"} == {"d000-era0"}
    assert sum(t == "details" and a.get("class") == "card" for t, a in tags) == 2


def test_same_record_renders_the_same_bytes(store, page):
    _, markup = page
    assert rep.render(rep.gather(store)) == markup


def test_out_path_in_the_work_tree_warns_that_it_dirties_the_tree(store, tmp_path):
    elsewhere = lineage(store, "report", "--out", tmp_path / "r.html")
    assert (tmp_path / "r.html").is_file() and "note:" not in elsewhere.stderr
    inside = lineage(store, "report", "--out", "loose.html")
    try:
        assert "not git-ignored" in inside.stderr and "lineage propose" in inside.stderr
    finally:
        (store / "loose.html").unlink()


def test_open_without_a_display_prints_the_path_and_a_note(store):
    proc = lineage(store, "report", "--open", env={"DISPLAY": "", "WAYLAND_DISPLAY": ""})
    assert proc.stdout.startswith("report: ") and "no display" in proc.stderr


def test_fresh_store_without_candidates_renders_an_empty_report(store_template, tmp_path):
    proc = lineage(store_template, "--json", "report", "--out", tmp_path / "r.html")
    data = json.loads(proc.stdout)["data"]
    assert data["candidates"] == [] and data["history"] == [] and data["head"]["generation"] is None
    markup = (tmp_path / "r.html").read_text()
    assert "no generation yet" in markup and "no candidate has metrics yet" in markup


def test_outside_a_store_report_says_so(tmp_path):
    proc = lineage(tmp_path, "report", check=False)
    assert proc.returncode == 3 and "is not a lineage store" in proc.stderr


def test_png_without_chromium_is_one_error_line_naming_the_install(store, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "git").symlink_to(shutil.which("git"))
    proc = lineage(store, "report", "--png", "--out", tmp_path / "r.html", check=False,
                   env={"PATH": str(bare)})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "Chromium" in errors[0]
    assert "apt-get install chromium" in proc.stderr
    assert (tmp_path / "r.html").is_file()  # the page itself is written first


# ------------------------------------------------------------------ a real browser


def test_headless_chromium_renders_the_tree_charts_and_a_coloured_screenshot(store, page, tmp_path):
    browser = require_browser()
    path, _ = page
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        dom = sh(rep.browser_args(browser, profile) + ["--dump-dom", path.as_uri()], tmp_path).stdout
    tags = parse(dom).tags
    rendered = {(a.get("class"), a.get("data-generation")) for t, a in tags if t == "g"}
    for generation in ("G000", "G001", "G002"):
        assert ("candidate PASS", generation) in rendered or ("candidate FAIL", generation) in rendered
    assert ("main-node rollback head", "G000") in rendered
    svgs = {a.get("class") for t, a in tags if t == "svg"}
    charts = {f"metric-chart metric-{key}" for key, _, _ in rep.METRICS}
    assert {"tree", "delta-heatmap", "loss-chart", "budget"} | charts <= svgs
    assert not any(t == "script" for t, _ in tags)

    out = tmp_path / "shot" / "report.html"
    proc = lineage(store, "report", "--png", "--out", out)
    png = out.with_suffix(".png")
    assert f"overview: {png}" in proc.stdout
    width, height, colours = png_colours(png, {PASS_FILL, FAIL_FILL})
    assert (width, height) == (1280, 1600)
    assert {PASS_FILL, FAIL_FILL} <= colours, "the tree's PASS and FAIL boxes are not in the picture"
    assert len(colours) > 20
