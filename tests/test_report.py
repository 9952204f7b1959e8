"""`lineage report`: one self-contained HTML page built from a real store's record, checked in a real browser.

The store is real and small: G000 promoted, G001-a frozen FAIL over its step budget, G002-b promoted,
then a rollback to G000 and an approved change, both with hostile reasons. Headless Chromium renders
the page (DOM and screenshot); without Chromium the browser test fails, naming the install
(`make test` installs it where it runs as root).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import tempfile
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from conftest import clone_store, lineage, relaxed_tiny, sh, trained_g000

from lineage.core.errors import UsageError
from lineage.ui import report as rep
from lineage.ui import report_events, report_svg, report_tree

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
    ids = {attrs["id"] for _, attrs in tags.tags if "id" in attrs}
    for tag, attrs in tags.tags:
        for key, value in attrs.items():
            if key == "href" and value.startswith("#") and value[1:] in ids:
                continue  # a link to a section of this very page
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


# ------------------------------------------------------------------ the pictures, from plain data

SVG = "{http://www.w3.org/2000/svg}"


def criterion(name, observed, op, threshold, applicable=True, note=""):
    passed = observed <= threshold if op == "<=" else observed >= threshold
    return {"name": name, "observed": observed, "op": op, "threshold": threshold, "parent": None, "passed": passed,
            "applicable": applicable, "note": note}


def attempt(name, parent, time, verdict="PASS", promoted=False, head=False, tone=0.02, probes="sha256:p0"):
    """One candidate as `gather` returns it; the first generation's tone drift is exempt, as the gate records it."""
    metrics = None if verdict == "FAIL" else {
        "recall": 0.6, "generalize": 0.5, "tone_drift": tone, "law_violations": 2, "recall_by_delta": {},
        "parent": {"recall": 0.5, "generalize": 0.4, "law_violations": 2, "recall_by_delta": {}}}
    criteria = [] if metrics is None else [
        criterion("recall", 0.6, ">=", 0.4), criterion("generalize", 0.5, ">=", 0.45),
        criterion("tone_drift", tone, "<=", 0.1, applicable=parent is not None,
                  note="" if parent else "first generation: no parent voice to keep")]
    return {"generation": name.split("-")[0], "name": name, "branch": f"candidates/{name}", "commit": f"{time:040x}",
            "parent": parent, "verdict": verdict, "failed": ["budget.steps"] if verdict == "FAIL" else [],
            "reason": "budget exceeded" if verdict == "FAIL" else None, "composite": None if metrics is None else 0.6,
            "promoted": promoted, "head": head, "subject": name, "time": time, "metrics": metrics,
            "criteria": criteria, "probes": None if metrics is None else probes, "diff": None,
            "budget": [{"name": k, "used": None, "limit": None, "unit": u} for k, _, u in rep.BUDGET],
            "budget_status": "COMPLETE", "loss_curve": [], "card": None}


def record(candidates: list[dict], history: list[dict]) -> dict:
    return {"schema_version": 1, "store": "plain", "protected_branch": "main",
            "head": {"generation": history[-1]["generation"] if history else None, "commit": None},
            "log_tip": None, "policy": None, "candidates": candidates, "history": history, "events": [],
            "problems": []}


def promotion(c: dict) -> dict:
    return {"generation": c["generation"], "kind": "promotion", "commit": c["commit"], "from": None, "reason": None,
            "time": c["time"] + 1}


def long_record(generations: int = 20) -> dict:
    """Windows of three (a promoted, b passing but not promoted, c failing), a rollback every fifth generation."""
    candidates, history, parent = [], [], None
    for g in range(generations):
        window = [attempt(f"G{g:03d}-a", parent, 100 * g + 1, promoted=True),
                  attempt(f"G{g:03d}-b", parent, 100 * g + 2), attempt(f"G{g:03d}-c", parent, 100 * g + 3, "FAIL")]
        candidates += window
        history.append(promotion(window[0]))
        parent = window[0]["generation"]
        if g % 5 == 4:
            back = f"G{g - 1:03d}"
            history.append({"generation": back, "kind": "rollback", "commit": f"{100 * g + 50:040x}",
                            "from": parent, "reason": "a regression the gate could not see", "time": 100 * g + 50})
            parent = back
    candidates[-3]["head"] = True
    return record(candidates, history)


def svg_root(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def text_box(t: ET.Element) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of a <text>, from its font size and an average glyph of 0.6 em."""
    x, y, size = float(t.get("x")), float(t.get("y")), float(t.get("font-size"))
    width = len(t.text or "") * size * 0.6
    left = {"start": x, "middle": x - width / 2, "end": x - width}[t.get("text-anchor", "start")]
    return left, y - size, left + width, y + size * 0.25


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_tree_scales_to_the_page_and_failed_boxes_clear_the_main_line_labels():
    data = long_record(20)
    markup = report_tree.render_tree(data)
    svg = svg_root(markup)
    width, height = float(svg.get("width")), float(svg.get("height"))
    assert svg.get("viewBox") == f"0 0 {width:.0f} {height:.0f}"
    assert "max-width:100%" in svg.get("style") and "height:auto" in svg.get("style")  # scales down to the page
    assert width <= 1280, "24 columns wrap into bands instead of one strip wider than the page"
    assert len(svg.findall(f"{SVG}line[@class='main-line']")) == 3  # 24 columns: three bands of at most 8
    boxes = {g.get("data-candidate"): g.find(f"{SVG}rect") for g in svg.iter(f"{SVG}g")
             if "candidate" in (g.get("class") or "").split()}
    assert len(boxes) == 60
    rects = {n: (float(r.get("x")), float(r.get("y")), float(r.get("x")) + float(r.get("width")),
                 float(r.get("y")) + float(r.get("height"))) for n, r in boxes.items()}
    # what the main line writes: node labels, captions (rollback reasons), the branch's name, base, HEAD
    labels = [text_box(t) for g in svg.iter(f"{SVG}g") if "main-node" in (g.get("class") or "")
              for t in g.iter(f"{SVG}text")]
    labels += [text_box(t) for t in svg.iter(f"{SVG}text") if t.get("class") in ("main-label", "gen-label")]
    labels += [(float(c.get("cx")) - float(c.get("r")), float(c.get("cy")) - float(c.get("r")),
                float(c.get("cx")) + float(c.get("r")), float(c.get("cy")) + float(c.get("r")))
               for g in svg.iter(f"{SVG}g") if "main-node" in (g.get("class") or "") for c in g.iter(f"{SVG}circle")]
    labels += [(float(r.get("x")), float(r.get("y")), float(r.get("x")) + float(r.get("width")),
                float(r.get("y")) + float(r.get("height"))) for g in svg.iter(f"{SVG}g")
               if g.get("class") == "head-badge" for r in g.iter(f"{SVG}rect")]
    assert len(labels) > 60
    for name, box in rects.items():
        assert not any(overlap(box, lab) for lab in labels), f"{name}'s box sits on a label of the main line"
        assert 0 <= box[0] and box[2] <= width and 0 <= box[1] and box[3] <= height, f"{name} outside the picture"
    names = sorted(rects)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not overlap(rects[a], rects[b]), f"{a} and {b} overlap"
    # lines go under the boxes: no fork or link is drawn across a box's label
    order = [e.get("class") or "" for e in svg.iter() if e.tag in (f"{SVG}path", f"{SVG}g")]
    last_line = max(i for i, c in enumerate(order) if c in ("fork", "rollback-arc"))
    assert last_line < min(i for i, c in enumerate(order) if c.startswith("candidate "))


def test_only_the_promoted_candidate_of_a_window_looks_promoted():
    data = long_record(2)
    markup = rep.render(data)
    svg = svg_root(report_tree.render_tree(data))
    thick = {g.get("data-candidate") for g in svg.iter(f"{SVG}g") if "candidate" in (g.get("class") or "").split()
             and g.find(f"{SVG}rect").get("stroke-width") == "3"}
    assert thick == {"G000-a", "G001-a"}
    links = {float(line.get("x1")) for line in svg.iter(f"{SVG}line") if line.get("class") == "promoted-link"}
    xs = {g.get("data-candidate"): float(g.find(f"{SVG}rect").get("x")) + 55 for g in svg.iter(f"{SVG}g")
          if "candidate" in (g.get("class") or "").split()}
    assert links == {xs["G000-a"], xs["G001-a"]}
    for g in ("G000", "G001"):  # the window's other passing candidate shares the column, not the look
        assert xs[f"{g}-b"] == xs[f"{g}-a"] and f"{g}-b" not in thick
    tags = parse(markup).tags
    filled = {a["data-candidate"] for t, a in tags if t == "circle" and "point" in a.get("class", "")
              and a.get("fill") != "#fff"}
    assert filled <= {"G000-a", "G001-a"} and "G001-a" in filled
    promoted_rows = re.findall(r'<td>([^<]+)</td><td><span class="PASS">PASS</span></td><td>yes</td>', markup)
    assert promoted_rows == ["G000-a", "G001-a"]
    summaries = re.findall(r'<details class="attempt" data-candidate="([^"]+)"[^>]*><summary>[^<]*<span[^>]*>PASS'
                           r"</span> — promoted", markup)
    assert summaries == ["G000-a", "G001-a"]


def test_charts_mark_where_the_probe_set_changed():
    cands = [attempt("G000-a", None, 1, promoted=True), attempt("G001-a", "G000", 2, promoted=True),
             attempt("G002-a", "G001", 3, "FAIL"), attempt("G003-a", "G001", 4, probes="sha256:p1"),
             attempt("G003-b", "G001", 5, probes="sha256:p1")]
    data = record(cands, [promotion(cands[0]), promotion(cands[1])])
    for key, title, integer in rep.METRICS:
        svg = svg_root(report_svg.render_metric_chart(data, key, title, integer))
        marks = [g for g in svg.iter(f"{SVG}g") if g.get("class") == "probe-change"]
        assert [g.get("data-candidate") for g in marks] == ["G003-a"], key  # the failed run, unjudged, is skipped
        line, label = marks[0].find(f"{SVG}line"), marks[0].find(f"{SVG}text")
        assert label.text == "probe set changed" and line.get("stroke-dasharray")
        points = {c.get("data-candidate"): float(c.get("cx")) for c in svg.iter(f"{SVG}circle")}
        assert points["G001-a"] < float(line.get("x1")) == float(line.get("x2")) < points["G003-a"]
    unchanged = record(cands[:2], [promotion(cands[0])])
    assert "probe-change" not in report_svg.render_metric_chart(unchanged, "recall", "recall", False)


def test_exempt_first_generation_tone_drift_does_not_set_the_axis():
    cands = [attempt("G000-a", None, 1, promoted=True, tone=0.93), attempt("G001-a", "G000", 2, promoted=True,
                                                                             tone=0.03),
             attempt("G002-a", "G001", 3, tone=0.05)]
    data = record(cands, [promotion(cands[0]), promotion(cands[1])])
    svg = svg_root(report_svg.render_metric_chart(data, "tone_drift", "tone drift", False))
    ticks = [float(t.text) for t in svg.iter(f"{SVG}text") if t.get("text-anchor") == "end" and t.get("fill") == "#666"]
    assert max(ticks) < 0.2, f"the axis runs to {max(ticks)}: the exempt 0.93 set it"
    points = {c.get("data-candidate"): c for c in svg.iter(f"{SVG}circle")}
    exempt = points["G000-a"]
    assert "exempt" in exempt.get("class") and "off-axis" in exempt.get("class")
    assert exempt.get("fill") == "#fff" and exempt.get("stroke") == "#999"  # greyed
    assert float(exempt.get("cy")) == 30.0  # on the axis's top edge
    notes = [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "axis-note"]
    assert notes == ["▲ G000-a 0.93: not judged (exempt), off the axis"]
    thresholds = [t.text for t in svg.iter(f"{SVG}text") if t.get("fill") == report_svg.THRESHOLD]
    assert len(thresholds) == 2  # the exempt generation had no threshold applied: none drawn for it


def test_attempt_ids_are_sanitised_and_unique():
    hostile = [attempt('G001-a"><script>', "G000", 1), attempt("G001-a__script_", "G000", 2),
               attempt("G001-a", "G000", 3)]
    ids = [report_svg.anchor(c) for c in hostile]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"attempt-[A-Za-z0-9_-]+", i) for i in ids)
    assert report_svg.anchor(hostile[2]) == "attempt-G001-a"
    markup = rep.render(record(hostile, []))
    assert "<script" not in markup and all(f'id="{i}"' in markup for i in ids)


@pytest.mark.parametrize(("event", "data", "expected"), [
    ("PROPOSE", {"branch": "candidates/G003-b", "parent": "G002", "overrides": ["train.max_steps=20"]},
     "G003-b from G002 with train.max_steps=20"),
    ("COMMIT", {"old": "a" * 40, "new": "b" * 40, "ref": "main", "approved_by": "ana"},
     "main → G003-b (commit bbbbbbbbbbbb, was aaaaaaaaaaaa), approved by ana"),
    ("ROLLBACK", {"from": "G003", "to": "G002", "reason": "regressed", "commit": "c" * 40}, "G003 → G002: regressed"),
    ("REJECT", {"failed": ["recall", "tone_drift"], "reason": "gate"}, "failed recall, tone_drift: gate"),
    ("EVAL_COMPLETE", {"verdict": "FAIL", "recall": 0.5, "generalize": 0.25, "tone_drift": 0.5, "law_violations": 1},
     "FAIL (recall 0.5, generalize 0.25, tone_drift 0.5)"),
    ("SHADOW", {"candidate": "candidates/G003-b", "parity": 0.97, "samples": 200, "failures": 0},
     "G003-b parity 0.97 over 200 samples"),
    ("PROPOSAL", {"candidate": "candidates/G003-b", "improvement": 0.02, "risk": "low"},
     "G003-b, improvement 0.02, risk low"),
    ("BURN_IN", {"passed": False, "reason": "smoke probe 3"}, "FAILED: smoke probe 3"),
    ("WINDOW_CLOSE", {"cycle": 4, "outcome": "promoted"}, "cycle 4: promoted"),
    ("ROLLBACK", {"from": "G003"}, "G003 → ?"),
    ("SHADOW", "not a dict", "? parity – over – samples"),
])
def test_events_summarise_the_fields_that_matter_per_kind(event, data, expected):
    names = {"b" * 40: "G003-b"}
    assert report_events.summary({"event": event, "data": data}, names) == expected


# ------------------------------------------------------------------ the page's sections, from the real store


def test_events_table_shows_key_fields_with_raw_json_behind_a_disclosure(store, page):
    _, markup = page
    events = json.loads(lineage(store, "--json", "report").stdout)["data"]["events"]
    table = markup[markup.index('<table class="events">'):]
    table = table[:table.index("</table>")]
    heads = re.findall(r"<th>([^<]+)</th>", table)
    assert heads == ["time (UTC)", "event", "generation", "what happened", "record"]
    rows = re.findall(r'<tr class="event"><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>'
                      r'<td><details class="raw"><summary>JSON</summary><pre>(.*?)</pre></details></td></tr>',
                      table, re.S)
    assert len(rows) == len(events)
    for (when, kind, generation, _, raw), event in zip(rows, events, strict=True):
        assert json.loads(html.unescape(raw)) == event  # the whole record, one click away
        assert kind == event["event"] and generation == (event["generation"] or "")
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when)
    said = {(kind, html.unescape(summary)) for _, kind, _, summary, _ in rows}
    g002 = next(e for e in events if e["event"] == "COMMIT" and e["generation"] == "G002")["data"]["new"]
    assert ("COMMIT", f"main → G002-b (commit {g002[:12]}, was "
            f"{next(e for e in events if e['event'] == 'COMMIT' and e['generation'] == 'G002')['data']['old'][:12]})"
            ) in said
    assert ("ROLLBACK", f"G002 → G000: {' '.join(HOSTILE.split())}") in said
    assert ("REJECT", "failed budget.steps: budget exceeded: max_steps used 17 > allowed 16") in said
    assert ("PROPOSE", "G001-a from G000 with train.max_steps=20") in said


def test_attempt_sections_hold_lineage_diffs_facts_less_the_weights(store):
    data = json.loads(lineage(store, "--json", "report").stdout)["data"]
    rows = {c["name"]: c for c in data["candidates"]}
    assert rows["G000-a"]["diff"] is None  # trained from the base
    for name in ("G001-a", "G002-b"):
        full = json.loads(lineage(store, "--json", "diff", "G000", name).stdout)
        full.pop("weights")
        assert rows[name]["diff"] == full
    assert rows["G002-b"]["probes"] != rows["G000-a"]["probes"] and rows["G001-a"]["probes"] is None


def test_real_charts_mark_the_probe_set_change_between_g000_and_g002(page):
    _, markup = page
    marks = [a["data-candidate"] for t, a in parse(markup).tags if t == "g" and a.get("class") == "probe-change"]
    assert marks == ["G002-b"] * len(rep.METRICS)  # era 1's probes came with G002's data


def test_clicking_a_tree_node_opens_that_attempts_card_reasons_and_diff(page, tmp_path):
    browser = require_browser()
    path, markup = page
    tree = markup[markup.index('<svg class="tree"'):]
    tree = tree[:tree.index("</svg>")]
    links = dict(re.findall(r'<a href="#(attempt-[A-Za-z0-9_-]+)"><g class="candidate [A-Z]+" data-candidate="([^"]+)"',
                            tree))
    assert sorted(links.values()) == ["G000-a", "G001-a", "G002-b"]
    main_links = re.findall(r'<a href="#(attempt-[A-Za-z0-9_-]+)"><g class="main-node', tree)
    assert main_links == ["attempt-G000-a", "attempt-G002-b", "attempt-G000-a"]  # the rollback: the restored one
    for target, name in links.items():
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            dom = sh(rep.browser_args(browser, profile) + ["--dump-dom", f"{path.as_uri()}#{target}"], tmp_path).stdout
        sections = {a["data-candidate"]: a for t, a in parse(dom).tags
                    if t == "details" and a.get("class") == "attempt"}
        opened = {n for n, a in sections.items() if "open" in a}
        assert opened == {name, "G000-a"}, f"following #{target} opened {opened}"  # G000-a: HEAD, open already
        body = dom[dom.index(f'id="{target}"'):]
        body = body[:body.index('<details class="attempt"')] if '<details class="attempt"' in body else body
        assert '<p class="reasons">' in body and '<table class="criteria">' in body or name == "G001-a"
        if name == "G000-a":
            assert "trained from the base" in body and '<details class="card"' in body
            continue
        assert '<table class="diff">' in body and "<h4>against its parent G000</h4>" in body
        assert "data added: d001-era1" in body and "lineage diff G000 " + name in body
        if name == "G001-a":
            assert "failed budget.steps: budget exceeded: max_steps used 17 &gt; allowed 16" in body
            assert "no model card" in body
        else:
            assert '<details class="card" data-candidate="G002-b" open="">' in body and "# G002-b" in body
            assert "different probe sets" in body
