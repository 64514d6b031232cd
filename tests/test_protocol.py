"""Protocol text: every registered method describes itself from its parameters, with its
references, in every format."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factories import example_design
from theradose.cli import app
from theradose.config import design_from_dict, load_design
from theradose.methods import METHODS
from theradose.protocol import PROTOCOL_FORMATS, protocol_sections, render_protocol

DESIGNS = Path(__file__).resolve().parents[1] / "designs"


@pytest.mark.parametrize("key", list(METHODS))
def test_every_method_describes_itself_with_its_references(key):
    design = example_design(key)
    headings = [heading for heading, _ in protocol_sections(design)]
    assert headings[:2] == ["Design", "Dose-finding rule"]
    rule = dict(protocol_sections(design))["Dose-finding rule"]
    assert len(rule) > 80, rule  # a real paragraph, not a name
    assert design.method.references, key
    for fmt in PROTOCOL_FORMATS:
        text = render_protocol(design, fmt)
        for reference in design.method.references:
            assert reference in (json.loads(text)["references"] if fmt == "json" else text)


def test_boin_paragraph_carries_its_boundaries_and_no_rule_that_cannot_fire():
    design = example_design("boin")
    lambda_e, lambda_d = design.method.lambdas
    text = render_protocol(design, "text")
    assert f"λe = {lambda_e:.4f}" in text and f"λd = {lambda_d:.4f}" in text
    assert "100 patients" not in text  # max_at_dose 100 cannot fire in a 36-patient trial


def test_organ_limits_and_timing_are_described():
    design = load_design(DESIGNS / "boin_psma_dosimetry.toml")
    sections = dict(protocol_sections(design))
    assert "23 Gy" in sections["Organ-dose limits"]
    assert "Menda" in render_protocol(design, "markdown")
    source = tomllib.loads((DESIGNS / "boin.toml").read_text())
    timed = design_from_dict(
        {**source, "timing": {"accrual_per_month": 2.0, "dlt_window_months": 3.0}}, "t.toml"
    )
    assert "window completes before" in dict(protocol_sections(timed))["Accrual and follow-up"]


def test_cli_protocol():
    result = CliRunner().invoke(app, ["protocol", str(DESIGNS / "crm.toml"), "-f", "markdown"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("# CRM") and "## References" in result.output


@pytest.mark.parametrize(
    ("file", "heading", "phrase", "reference"),
    [
        ("boin_backfill.toml", "Backfilling", "up to 9 backfill patients", "Zhao Y, Yuan Y"),
        ("boin_optimisation.toml", "Randomised dose optimisation", "40 new patients, 20 to the",
         "Optimizing the Dosage"),
        ("boin_psma_personalised.toml", "Design", "prescribed to the kidney", "Menda Y"),
    ],
)  # fmt: skip
def test_backfill_optimisation_and_personalised_activity_are_described(
    file, heading, phrase, reference
):
    design = load_design(DESIGNS / file)
    sections = dict(protocol_sections(design))
    assert phrase in sections[heading]
    assert reference in render_protocol(design)
