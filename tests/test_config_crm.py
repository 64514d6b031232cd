"""CRM design files: the [crm] and [stopping] sections and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_config import design_errors, write
from theradose.config import load_design
from theradose.constraints import Coherence, EscalationStep
from theradose.methods.crm import LogisticModel
from theradose.stopping import MaxAtDose, MaxPatients, SafetyStop

DESIGNS = Path(__file__).resolve().parents[1] / "designs"

CRM = """
method = "crm"
target = 0.3
levels = 6
max_patients = 30
[crm]
skeleton = [0.12, 0.2, 0.3, 0.4, 0.5, 0.59]
"""


def test_example_crm_design():
    design = load_design(DESIGNS / "crm.toml")
    assert design.method_key == "crm"
    assert design.method.model.skeleton == pytest.approx(
        [0.1225293582, 0.2039560076, 0.3, 0.4018194361, 0.5013464478, 0.5928140469]
    )
    assert design.constraints == (EscalationStep(1), Coherence(0.3))
    assert isinstance(design.stopping[0], MaxPatients)
    assert isinstance(design.stopping[1], SafetyStop) and design.stopping[1].cutoff == 0.9


def test_crm_defaults(tmp_path):
    design = load_design(write(tmp_path, CRM))
    assert design.method.prior_var == 1.34
    assert design.method.estimate == "plugin" and design.method.start_up == "none"
    assert design.constraints == (EscalationStep(1), Coherence(0.3))
    assert design.stopping == (MaxPatients(30),)


def test_crm_logistic_and_stopping(tmp_path):
    text = CRM + 'model = "logistic"\nintercept = 2.5\nno_skip = false\ncoherent = false\n'
    text += "[stopping]\nsafety_cutoff = 0.85\nsafety_min_n = 6\nmax_at_dose = 9\n"
    design = load_design(write(tmp_path, text))
    assert isinstance(design.method.model, LogisticModel) and design.method.model.intercept == 2.5
    assert design.constraints == ()
    safety, at_dose = design.stopping[1:]
    assert (safety.cutoff, safety.min_n) == (0.85, 6) and at_dose == MaxAtDose(9)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            "skeleton = [0.12, 0.3, 0.2, 0.4, 0.5, 0.59]",
            "[crm] skeleton: must be strictly increasing, got [0.12, 0.3, 0.2, 0.4, 0.5, 0.59] "
            "(level 3 is not above level 2)",
        ),
        (
            "skeleton = [0.1, 0.2, 0.3]",
            "[crm] skeleton: has 3 values, but the design has 6 levels",
        ),
        (
            "skeleton = { halfwidth = 0.05, prior_mtd = 7 }",
            "[crm] [skeleton] prior_mtd = 7: must be an integer in 1..6",
        ),
        (
            "skeleton = { halfwidth = 0.29, prior_mtd = 3 }",
            "[crm] [skeleton] halfwidth = 0.29: too large for 6 levels: skeleton value",
        ),
        (
            "skeleton = { halfwidth = 0.05 }",
            "[crm] [skeleton] missing key 'prior_mtd'",
        ),
        ("prior_var = 0", "[crm] prior_var = 0: must be a number > 0"),
        ('estimate = "mean"', '[crm] estimate = "mean": must be one of "plugin", "posterior_mean"'),
        ('model = "power"', '[crm] model = "power": must be one of "empiric", "logistic"'),
    ],
)
def test_bad_crm_options(tmp_path, edit, expected):
    key = edit.split(" =")[0]
    lines = [row for row in CRM.splitlines() if not row.startswith(f"{key} =")]
    errors = design_errors(tmp_path, "\n".join(lines) + "\n" + edit + "\n")
    assert any(error.startswith(expected) for error in errors), errors


def test_logistic_skeleton_above_its_intercept(tmp_path):
    text = CRM.replace("0.59]", "0.96]") + 'model = "logistic"\n'
    errors = design_errors(tmp_path, text)
    assert any("needs every skeleton value below 0.9526" in e for e in errors), errors


def test_safety_stop_needs_a_model(tmp_path):
    text = 'method = "boin"\ntarget = 0.3\nlevels = 4\nmax_patients = 12\n'
    text += "[stopping]\nsafety_cutoff = 0.9\n"
    errors = design_errors(tmp_path, text)
    assert errors == [
        '[stopping] safety_cutoff: the safety stop needs a model-based method (crm), '
        'not method = "boin"'
    ]
