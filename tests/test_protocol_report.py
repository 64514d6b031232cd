"""The protocol report (``theradose report``): one document model, written as HTML, Markdown and
DOCX; the HTML opens in a real browser and the DOCX in LibreOffice where they are installed."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from theradose import protocol_report
from theradose.cli import app
from theradose.pathways import dose_paths
from theradose.protocol import protocol_references, protocol_sections
from theradose.protocol_report import (
    Figure,
    Table,
    build_document,
    figure_folder,
    read_inputs,
    render_html,
    render_markdown,
    write_report,
)
from theradose.study import run_study

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = [ROOT / "designs" / "boin.toml", ROOT / "designs" / "crm.toml"]
SCENARIOS = ROOT / "designs" / "scenarios.toml"
N_TRIALS = 500
CHROMIUM = Path("/usr/bin/chromium")
HAS_DOT = shutil.which("dot") is not None
runner = CliRunner()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """BOIN and CRM on the five scenarios, 500 trials: the document and its three files."""
    folder = tmp_path_factory.mktemp("report")
    designs, scenarios, inputs = read_inputs(DESIGNS, SCENARIOS)
    study = run_study(designs, scenarios, n_trials=N_TRIALS, seed=7)
    blocks = build_document(study, inputs=inputs, command="theradose report (test)")
    files = {suffix: folder / f"report.{suffix}" for suffix in ("html", "md", "docx")}
    for path in files.values():
        write_report(blocks, path)
    return study, blocks, files


class _Page(HTMLParser):
    """Checks that every element is closed in order, and collects attributes and text."""

    VOID = {"meta", "br", "img", "hr", "input", "link", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
            if name == "id":
                self.ids.append(value)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <path .../> in SVG
        self.tags.append(tag)
        for name, value in attrs:
            self.attributes.append((tag, name, value or ""))
            if name == "id":
                self.ids.append(value)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _normal(text: str) -> str:
    return " ".join(text.split())


def test_html_is_well_formed_self_contained_and_carries_every_design(report):
    study, _, files = report
    text = files["html"].read_text(encoding="utf-8")
    page = _parse(text)
    assert not page.problems and not page.stack, (page.problems, page.stack)
    assert text.startswith("<!DOCTYPE html>")
    assert "script" not in page.tags and "link" not in page.tags and "iframe" not in page.tags
    outside = [
        (tag, name, value)
        for tag, name, value in page.attributes
        if name in ("src", "href", "xlink:href", "action")
        and re.match(r"\s*(https?:)?//", value, re.IGNORECASE)
    ]
    assert outside == []
    assert "@import" not in text and "url(http" not in text
    assert len(page.ids) == len(set(page.ids))  # two inline SVGs never share an id
    shown = _normal(" ".join(page.text))
    for design in study.designs:
        for heading, paragraph in protocol_sections(design):
            assert _normal(paragraph) in shown, heading
        for reference in protocol_references(design):
            assert _normal(reference) in shown
        assert f"Dose transition pathways: {design.name}" in shown
        for node in dose_paths(design, (), 2):
            assert (node.path or "(start)") in shown
    assert "λe = 0.2365" in shown  # BOIN's boundaries, in its protocol text
    assert "Decision table: BOIN, target 30%" in shown and "Prior: CRM, target 30%" in shown
    assert "indifference interval from" in shown  # the CRM's prior table
    figures = 1 + (len(study.designs) if HAS_DOT else 0)  # selection plot, pathway pictures
    assert text.count("<svg") >= figures


def test_html_tables_hold_the_operating_characteristics(report):
    study, _, files = report
    shown = _normal(" ".join(_parse(files["html"].read_text(encoding="utf-8")).text))
    for design, scenario, _, oc, _ in study.cells():
        assert f"Scenario {scenario.name}" in shown
        assert f"{oc.values['pcs']:.1f} ±{oc.se['pcs']:.1f}" in shown, (design.name, scenario)
    assert "Monte Carlo standard error" in shown
    assert "Appendix A. Reproducibility" in shown


def test_appendix_has_version_seed_trials_hashes_and_command(report):
    study, blocks, _ = report
    tables = {b.title.split(". ", 1)[1]: b for b in blocks if isinstance(b, Table)}
    settings = dict(tables["Settings"].rows)
    assert settings["theradose version"] == study.version
    assert settings["seed"] == "7" and settings["simulated trials per design and scenario"] == "500"
    hashes = {path: digest for _, path, digest in tables["Input files"].rows}
    for path in [*DESIGNS, SCENARIOS]:
        assert hashes[str(path)] == hashlib.sha256(path.read_bytes()).hexdigest()
    markdown, _ = render_markdown(blocks)
    assert "theradose report (test)" in markdown


def test_the_same_run_gives_the_same_html(report):
    study, blocks, files = report
    again = build_document(
        study, inputs=read_inputs(DESIGNS, SCENARIOS)[2], command="theradose report (test)"
    )
    assert render_html(again) == files["html"].read_text(encoding="utf-8")


def test_markdown_has_pipe_tables_and_its_figures_beside_it(report):
    study, blocks, files = report
    text = files["md"].read_text(encoding="utf-8")
    rules = [line for line in text.splitlines() if re.fullmatch(r"\|(-{3}:?\|)+", line)]
    n_tables = sum(isinstance(b, Table) for b in blocks)
    assert len(rules) == n_tables
    for design in study.designs:
        assert f"### 1.{study.designs.index(design) + 1} {design.name}" in text
    assert f"| {'(start)'} |" in text
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) == sum(isinstance(b, Figure) for b in blocks) >= 1
    for image in images:
        assert image.startswith(f"{figure_folder(files['md']).name}/")
        assert (files["md"].parent / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without, pictures = render_markdown(blocks)  # no folder: figures left out, with a note
    assert pictures == {} and "![" not in without and "Not shown here" in without


def test_docx_opens_with_real_tables_of_the_operating_characteristics(report):
    import docx

    study, blocks, files = report
    document = docx.Document(str(files["docx"]))
    assert len(document.tables) == sum(isinstance(b, Table) for b in blocks)
    cells = {cell.text for table in document.tables for row in table.rows for cell in row.cells}
    for _, _, _, oc, _ in study.cells():
        assert f"{oc.values['pcs']:.1f} ±{oc.se['pcs']:.1f}" in cells
    headings = [p.text for p in document.paragraphs if p.style.name.startswith("Heading")]
    for k, design in enumerate(study.designs, start=1):
        assert f"1.{k} {design.name}" in headings
    assert len(document.inline_shapes) == sum(isinstance(b, Figure) for b in blocks)
    assert document.core_properties.title.startswith("Statistical section")


def test_pathway_picture_falls_back_to_the_table_without_graphviz(report, monkeypatch):
    study, _, _ = report
    monkeypatch.setattr(protocol_report.shutil, "which", lambda name: None)
    blocks = build_document(study)
    text = _normal(" ".join(_parse(render_html(blocks)).text))
    assert text.count("Graphviz's 'dot' is not installed") == len(study.designs)
    assert not any(isinstance(b, Figure) and b.name.startswith("pathways") for b in blocks)
    assert "Table 2. Dose transition pathways: BOIN, target 30%" in text
    assert "equivalent; made from Python" in text  # no command line given: an equivalent one


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed (/usr/bin/chromium; Debian: apt install chromium)",
)
def test_html_renders_in_headless_chromium_without_console_messages(report, tmp_path):
    from matplotlib.image import imread

    study, _, files = report
    url = files["html"].resolve().as_uri()
    base = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    base += ["--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
    )
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # no error, no warning, no log: the page has no script
    shown = _normal(" ".join(_parse(dom.stdout).text))
    for design in study.designs:
        assert design.name in shown
    assert "Operating characteristics" in shown
    shot = tmp_path / "page.png"
    subprocess.run(
        [*base, "--window-size=1200,2400", f"--screenshot={shot}", url],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = imread(shot)[..., :3]
    inked = (pixels.min(axis=2) < 0.8).mean()
    assert inked > 0.02, f"blank page: {inked:.2%} of the pixels are not white"


@pytest.mark.skipif(
    shutil.which("libreoffice") is None,
    reason="LibreOffice not installed (Debian: apt install libreoffice-writer-nogui)",
)
def test_docx_converts_to_pdf_with_libreoffice(report, tmp_path):
    _, _, files = report
    profile = (tmp_path / "lo-profile").as_uri()
    subprocess.run(
        [
            "libreoffice", f"-env:UserInstallation={profile}", "--headless", "--convert-to",
            "pdf", "--outdir", str(tmp_path), str(files["docx"]),
        ],
        capture_output=True,
        timeout=300,
        check=True,
    )  # fmt: skip
    pdf = (tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 5  # the whole document, not a stub


def test_cli_report_checks_before_the_run_and_writes_the_format_of_the_suffix(
    tmp_path, monkeypatch
):
    args = [str(p) for p in DESIGNS] + ["--scenarios", str(SCENARIOS), "--trials", "50"]
    bad = runner.invoke(app, ["report", *args, "--out", str(tmp_path / "r.pdf"), "--seed", "-1"])
    assert bad.exit_code == 2
    assert "--out" in bad.stderr and "html, md, docx" in bad.stderr and "--seed" in bad.stderr
    assert not list(tmp_path.iterdir())
    too_many = runner.invoke(app, ["report", *args, "--out", str(tmp_path / "r.md"), "-k", "9"])
    assert too_many.exit_code == 2 and "ask for fewer cohorts" in too_many.stderr
    out = tmp_path / "r.md"
    argv = ["report", *args, "--out", str(out), "--cohorts", "1"]
    monkeypatch.setattr("sys.argv", ["/somewhere/bin/theradose", *argv])  # as a shell gives it
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    text = out.read_text(encoding="utf-8")
    assert "\ntheradose report " in text and "--cohorts 1\n" in text  # the command, verbatim
    assert "2NNN" not in text  # one cohort ahead only
