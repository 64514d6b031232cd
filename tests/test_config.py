"""Design and scenario files: every bad input gives a one-line message naming file, key and value;
the example files in designs/ load with the expected fields."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from theradose.config import (
    METHODS,
    ConfigError,
    check_scenarios_fit,
    design_from_dict,
    load_design,
    load_scenarios,
    scenarios_from_dict,
)
from theradose.methods import Boin, ThreePlusThree
from theradose.scenario import Scenario
from theradose.stopping import MaxAtDose, MaxPatients

DESIGNS = Path(__file__).resolve().parents[1] / "designs"
# Every method the schema knows, as messages list them: "3+3", "boin", ...
ALLOWED_METHODS = ", ".join(f'"{key}"' for key in METHODS)
ACTIVITIES = (1.85, 3.7, 5.55, 7.4, 9.25, 11.1)

BOIN = """
method = "boin"
target = 0.3
doses = [1.85, 3.7, 5.55, 7.4, 9.25, 11.1]
max_patients = 30
"""

THREE_PLUS_THREE = """
method = "3+3"
target = 0.3
levels = 5
"""


def write(tmp_path: Path, text: str, name: str = "design.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def design_errors(tmp_path: Path, text: str, name: str = "design.toml") -> list[str]:
    path = write(tmp_path, text, name)
    with pytest.raises(ConfigError) as caught:
        load_design(path)
    assert all(message.startswith(f"{path}: ") for message in caught.value.messages)
    assert all("\n" not in message for message in caught.value.messages)
    return [message.removeprefix(f"{path}: ") for message in caught.value.messages]


def scenario_errors(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path, text, "scen.toml")
    with pytest.raises(ConfigError) as caught:
        load_scenarios(path)
    assert all(message.startswith(f"{path}: ") for message in caught.value.messages)
    return [message.removeprefix(f"{path}: ") for message in caught.value.messages]


def with_line(text: str, key: str, line: str) -> str:
    """``text`` with the line setting ``key`` replaced by ``line`` (dropped when empty)."""
    lines = [line if row.startswith(f"{key} =") else row for row in text.splitlines()]
    if not any(row.startswith(f"{key} =") for row in text.splitlines()):
        lines.insert(1, line)
    return "\n".join(row for row in lines if row) + "\n"


# ---------------------------------------------------------------------------------------------
# The example files


def test_example_boin_design():
    design = load_design(DESIGNS / "boin.toml")
    assert design.name == "BOIN, target 30%"
    assert design.method_key == "boin"
    assert design.target == 0.3
    assert design.doses == ACTIVITIES
    assert design.dose_unit == "GBq"
    assert design.n_levels == 6
    assert design.start_level == 0
    assert design.cohort_size == 3
    assert design.max_patients == 36
    assert design.path == str(DESIGNS / "boin.toml")
    assert design.source["boin"]["p_saf"] == 0.18
    method = design.method
    assert isinstance(method, Boin)
    assert (method.n_levels, method.target, method.max_patients) == (6, 0.3, 36)
    assert (method.p_saf, method.p_tox) == (0.18, 0.42)
    assert (method.elimination_cutoff, method.extra_safe, method.extra_safe_offset) == (
        0.95,
        False,
        0.05,
    )
    assert design.stopping == (MaxPatients(36), MaxAtDose(100, only_when_staying=True))
    assert design.level_label(2) == "3 (5.55 GBq)"


def test_example_three_plus_three_design():
    design = load_design(DESIGNS / "three_plus_three.toml")
    assert design.method == ThreePlusThree(6, deescalate=True)
    assert design.target == 0.3
    assert design.doses == ACTIVITIES
    assert design.start_level == 0
    assert design.cohort_size == 3
    assert design.max_patients == 36  # default 6 per level
    assert design.stopping == (MaxPatients(36),)


def test_example_scenarios_fit_both_designs():
    path = DESIGNS / "scenarios.toml"
    scenarios = load_scenarios(path)
    assert scenarios == [
        Scenario("S1", (0.05, 0.10, 0.20, 0.30, 0.50, 0.70)),
        Scenario("S2", (0.30, 0.40, 0.50, 0.60, 0.70, 0.80)),
        Scenario("S3", (0.01, 0.02, 0.03, 0.05, 0.10, 0.30)),
        Scenario("S4", (0.10, 0.15, 0.30, 0.45, 0.60, 0.75)),
        Scenario("S5", (0.45, 0.55, 0.65, 0.75, 0.85, 0.95)),
    ]
    assert scenarios[-1].true_mtd(0.3) == -1  # S5 has no MTD
    for name in ("boin.toml", "three_plus_three.toml"):
        check_scenarios_fit(load_design(DESIGNS / name), scenarios, str(path))


# ---------------------------------------------------------------------------------------------
# Defaults


def test_boin_defaults(tmp_path):
    path = write(tmp_path, BOIN, "my_boin.toml")
    design = load_design(path)
    assert design.name == "my_boin"  # the file stem
    assert design.start_level == 0
    assert design.cohort_size == 3
    assert design.dose_unit == ""
    assert design.method.p_saf == pytest.approx(0.6 * 0.3)
    assert design.method.p_tox == pytest.approx(1.4 * 0.3)
    assert design.method.elimination_cutoff == 0.95
    assert design.method.extra_safe is False
    assert design.method.extra_safe_offset == 0.05
    assert design.stopping == (MaxPatients(30), MaxAtDose(100, only_when_staying=True))


def test_boin_section_values_used(tmp_path):
    text = BOIN + (
        "start_level = 2\ncohort_size = 1\n[boin]\np_saf = 0.2\np_tox = 0.4\n"
        "elimination_cutoff = 0.9\nextra_safe = true\nextra_safe_offset = 0.1\nmax_at_dose = 9\n"
    )
    design = load_design(write(tmp_path, text))
    assert design.start_level == 1
    assert design.cohort_size == 1
    method = design.method
    assert (method.p_saf, method.p_tox, method.elimination_cutoff) == (0.2, 0.4, 0.9)
    assert (method.extra_safe, method.extra_safe_offset) == (True, 0.1)
    assert design.stopping[1] == MaxAtDose(9, only_when_staying=True)


def test_three_plus_three_defaults_from_levels(tmp_path):
    design = load_design(write(tmp_path, THREE_PLUS_THREE))
    assert design.n_levels == 5
    assert design.doses is None
    assert design.max_patients == 30
    assert design.method == ThreePlusThree(5, deescalate=True)


def test_three_plus_three_escalation_only(tmp_path):
    text = THREE_PLUS_THREE + "[three_plus_three]\ndeescalate = false\n"
    assert load_design(write(tmp_path, text)).method == ThreePlusThree(5, deescalate=False)


def test_levels_and_doses_that_agree(tmp_path):
    design = load_design(write(tmp_path, BOIN + "levels = 6\n"))
    assert design.n_levels == 6


def test_design_from_dict_keeps_source_and_path():
    data = {"method": "3+3", "target": 0.25, "levels": 3, "max_patients": 12}
    design = design_from_dict(data, "somewhere/trial.toml")
    assert design.name == "trial"
    assert design.path == "somewhere/trial.toml"
    assert design.source == data
    assert design.max_patients == 12


# ---------------------------------------------------------------------------------------------
# Bad design files


def test_unknown_key_suggests_the_closest(tmp_path):
    errors = design_errors(tmp_path, BOIN + "cohort_sise = 3\n")
    assert errors == ["unknown key 'cohort_sise' (did you mean 'cohort_size'?)"]


def test_unknown_key_without_close_match_lists_allowed(tmp_path):
    (error,) = design_errors(tmp_path, BOIN + "colour = 3\n")
    assert error.startswith("unknown key 'colour' (allowed: name, method, target, doses")


def test_unknown_key_in_method_section(tmp_path):
    errors = design_errors(tmp_path, BOIN + "[boin]\np_sav = 0.1\n")
    assert errors == ["[boin] unknown key 'p_sav' (did you mean 'p_saf'?)"]


def test_unknown_method_lists_allowed(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "method", 'method = "mystery"'))
    assert errors == [f'method = "mystery": must be one of {ALLOWED_METHODS}']


def test_misspelt_method_suggests(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "method", 'method = "BION"'))
    assert errors == [f'method = "BION": must be one of {ALLOWED_METHODS} (did you mean "boin"?)']


def test_missing_method_and_target(tmp_path):
    text = "levels = 3\nmax_patients = 9\n"
    errors = design_errors(tmp_path, text)
    assert errors == [
        f"missing key 'method' (one of {ALLOWED_METHODS})",
        "missing key 'target' (the target DLT probability, a number in (0, 1))",
    ]


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.1", "nan", "inf"])
def test_target_outside_unit_interval(tmp_path, value):
    errors = design_errors(tmp_path, with_line(BOIN, "target", f"target = {value}"))
    assert errors == [f"target = {value}: must be a number in (0, 1)"]


def test_target_given_as_string(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "target", 'target = "0.3"'))
    assert errors == ['target = "0.3": must be a number in (0, 1), got a string']


def test_target_given_as_bool(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "target", "target = true"))
    assert errors == ["target = true: must be a number in (0, 1), got a boolean"]


@pytest.mark.parametrize("value", ["0", "-3"])
def test_cohort_size_below_one(tmp_path, value):
    errors = design_errors(tmp_path, BOIN + f"cohort_size = {value}\n")
    assert errors == [f"cohort_size = {value}: must be an integer >= 1"]


def test_bool_for_integer(tmp_path):
    errors = design_errors(tmp_path, BOIN + "cohort_size = true\n")
    assert errors == ["cohort_size = true: must be an integer >= 1, got a boolean"]


def test_float_for_integer(tmp_path):
    errors = design_errors(tmp_path, with_line(THREE_PLUS_THREE, "levels", "levels = 5.0"))
    assert errors == ["levels = 5.0: must be an integer >= 1, got a float"]


def test_three_plus_three_needs_cohorts_of_three(tmp_path):
    errors = design_errors(tmp_path, THREE_PLUS_THREE + "cohort_size = 4\n")
    assert errors == ['cohort_size = 4: must be 3 for method = "3+3"']


@pytest.mark.parametrize("level", [0, 7])
def test_start_level_out_of_range(tmp_path, level):
    errors = design_errors(tmp_path, BOIN + f"start_level = {level}\n")
    if level == 0:
        assert errors == ["start_level = 0: must be an integer >= 1"]
    else:
        assert errors == ["start_level = 7: must be an integer in 1..6 (the levels)"]


def test_levels_and_doses_disagree(tmp_path):
    errors = design_errors(tmp_path, BOIN + "levels = 5\n")
    assert errors == ["levels = 5: does not match doses (6 values)"]


def test_doses_not_increasing(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "doses", "doses = [1.0, 2.0, 2.0, 3.0]"))
    assert errors == [
        "doses: must be strictly increasing, got [1.0, 2.0, 2.0, 3.0] "
        "(level 3 is not above level 2)"
    ]


def test_doses_not_positive(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "doses", "doses = [0, 1.0]"))
    assert errors == ["doses: every value must be > 0, got [0, 1.0] (level 1 is 0)"]


def test_doses_not_numbers(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "doses", 'doses = [1.0, "2 GBq"]'))
    assert errors == [
        'doses: must be an array of numbers, got [1.0, "2 GBq"] (level 2 is a string)'
    ]
    errors = design_errors(tmp_path, with_line(BOIN, "doses", "doses = 1.85"))
    assert errors == ["doses = 1.85: must be an array of numbers > 0, got a float"]


def test_neither_levels_nor_doses(tmp_path):
    (error,) = design_errors(tmp_path, with_line(BOIN, "doses", ""))
    assert error.startswith("missing key 'doses' or 'levels'")


def test_boin_needs_max_patients(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "max_patients", ""))
    assert errors == [
        "missing key 'max_patients' (an integer >= cohort_size, required for method = \"boin\")"
    ]


def test_max_patients_below_cohort_size(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "max_patients", "max_patients = 2"))
    assert errors == ["max_patients = 2: must be an integer >= cohort_size (3)"]


def test_boin_section_in_three_plus_three_design(tmp_path):
    errors = design_errors(tmp_path, THREE_PLUS_THREE + "[boin]\np_saf = 0.1\n")
    assert errors == [
        'section [boin] is only for method = "boin" or "tite-boin" '
        '(this design has method = "3+3")'
    ]


def test_three_plus_three_section_in_boin_design(tmp_path):
    errors = design_errors(tmp_path, BOIN + "[three_plus_three]\ndeescalate = false\n")
    assert errors == [
        'section [three_plus_three] is only for method = "3+3" (this design has method = "boin")'
    ]


def test_method_section_not_a_table(tmp_path):
    errors = design_errors(tmp_path, BOIN.replace('method = "boin"', 'method = "boin"\nboin = 1'))
    assert errors == ["boin = 1: must be a table ([boin]), got an integer"]


def test_boin_p_saf_not_below_target(tmp_path):
    errors = design_errors(tmp_path, BOIN + "[boin]\np_saf = 0.4\n")
    assert errors == ["[boin] p_saf = 0.4: must be below target (0.3)"]


def test_boin_p_tox_not_above_target(tmp_path):
    errors = design_errors(tmp_path, BOIN + "[boin]\np_tox = 0.3\n")
    assert errors == ["[boin] p_tox = 0.3: must be above target (0.3)"]


def test_boin_p_saf_and_p_tox_outside_unit_interval(tmp_path):
    errors = design_errors(tmp_path, BOIN + "[boin]\np_saf = 0\np_tox = 1.2\n")
    assert errors == [
        "[boin] p_saf = 0: must be a number in (0, 1)",
        "[boin] p_tox = 1.2: must be a number in (0, 1)",
    ]


def test_boin_default_p_tox_not_below_one(tmp_path):
    errors = design_errors(tmp_path, with_line(BOIN, "target", "target = 0.75"))
    assert errors == [
        "[boin] p_tox: the default 1.4 × target = 1.05 is not below 1; "
        "give p_tox, a number in (0.75, 1)"
    ]


def test_boin_section_types_and_ranges(tmp_path):
    text = BOIN + (
        '[boin]\nextra_safe = "yes"\nelimination_cutoff = 1\nextra_safe_offset = 0.5\n'
        "max_at_dose = 0\n"
    )
    errors = design_errors(tmp_path, text)
    assert errors == [
        "[boin] elimination_cutoff = 1: must be a number in (0, 1)",
        "[boin] extra_safe_offset = 0.5: must be a number in [0, 0.5)",
        '[boin] extra_safe = "yes": must be true or false, got a string',
        "[boin] max_at_dose = 0: must be an integer >= 1",
    ]


def test_name_must_be_a_string(tmp_path):
    errors = design_errors(tmp_path, BOIN + "name = 3\n")
    assert errors == ["name = 3: must be a string, got an integer"]


def test_several_errors_reported_together(tmp_path):
    text = """
method = "boin"
target = 1.5
doses = [3.7, 1.85]
levels = 3
cohort_sise = 3
start_level = true
[boin]
max_at_dose = 0
"""
    errors = design_errors(tmp_path, text, "boin.toml")
    assert errors == [
        "unknown key 'cohort_sise' (did you mean 'cohort_size'?)",
        "target = 1.5: must be a number in (0, 1)",
        "doses: must be strictly increasing, got [3.7, 1.85] (level 2 is not above level 1)",
        "start_level = true: must be an integer >= 1, got a boolean",
        "missing key 'max_patients' (an integer >= cohort_size, required for method = \"boin\")",
        "[boin] max_at_dose = 0: must be an integer >= 1",
    ]


def test_error_message_format(tmp_path):
    path = write(tmp_path, with_line(BOIN, "target", "target = 1.5") + "cohort_sise = 3\n")
    with pytest.raises(ConfigError) as caught:
        load_design(path)
    assert str(caught.value) == (
        f"{path}: unknown key 'cohort_sise' (did you mean 'cohort_size'?)\n"
        f"{path}: target = 1.5: must be a number in (0, 1)"
    )


def test_config_error_survives_pickling():
    error = ConfigError(["a: one", "a: two"])
    again = pickle.loads(pickle.dumps(error))
    assert again.messages == ["a: one", "a: two"]
    assert str(again) == "a: one\na: two"


def test_malformed_toml(tmp_path):
    path = write(tmp_path, 'method = "boin"\ntarget = = 0.3\n')
    with pytest.raises(ConfigError) as caught:
        load_design(path)
    (message,) = caught.value.messages
    assert message.startswith(f"{path}: invalid TOML: ")
    assert "line 2" in message


def test_missing_file(tmp_path):
    path = str(tmp_path / "nowhere.toml")
    with pytest.raises(ConfigError) as caught:
        load_design(path)
    assert caught.value.messages == [f"{path}: file not found"]
    with pytest.raises(ConfigError) as caught:
        load_scenarios(path)
    assert caught.value.messages == [f"{path}: file not found"]


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_design(tmp_path)
    assert caught.value.messages == [f"{tmp_path}: is a directory, not a file"]


# ---------------------------------------------------------------------------------------------
# Scenario files


def test_scenarios_load(tmp_path):
    text = '[[scenario]]\nname = "A"\ndlt_prob = [0, 0.5, 1]\n'
    scenarios = load_scenarios(write(tmp_path, text, "scen.toml"))
    assert scenarios == [Scenario("A", (0.0, 0.5, 1.0))]
    assert all(isinstance(p, float) for p in scenarios[0].dlt_prob)


def test_scenario_decreasing(tmp_path):
    text = (
        '[[scenario]]\nname = "S1"\ndlt_prob = [0.1, 0.2, 0.3]\n'
        '[[scenario]]\nname = "S2"\ndlt_prob = [0.1, 0.05, 0.2]\n'
    )
    errors = scenario_errors(tmp_path, text)
    assert errors == [
        'scenario[2] ("S2") dlt_prob: must be non-decreasing, got [0.1, 0.05, 0.2] '
        "(level 2 is below level 1)"
    ]


def test_scenario_outside_unit_interval(tmp_path):
    text = '[[scenario]]\nname = "S1"\ndlt_prob = [0.1, 0.5, 1.2]\n'
    errors = scenario_errors(tmp_path, text)
    assert errors == [
        'scenario[1] ("S1") dlt_prob: every value must be in [0, 1], got [0.1, 0.5, 1.2] '
        "(level 3 is 1.2)"
    ]


def test_scenario_names_unique_and_required(tmp_path):
    text = (
        '[[scenario]]\nname = "S1"\ndlt_prob = [0.1]\n'
        '[[scenario]]\nname = "S1"\ndlt_prob = [0.2]\n'
        "[[scenario]]\ndlt_prob = [0.3]\n"
    )
    errors = scenario_errors(tmp_path, text)
    assert errors == [
        'scenario[2] ("S1") name = "S1": must be unique, also used by scenario[1]',
        "scenario[3] missing key 'name' (a unique name, such as \"S1\")",
    ]


def test_scenario_unknown_key_and_missing_dlt_prob(tmp_path):
    text = '[[scenario]]\nname = "S1"\ndlt_probs = [0.1]\n'
    errors = scenario_errors(tmp_path, text)
    assert errors == [
        "scenario[1] (\"S1\") unknown key 'dlt_probs' (did you mean 'dlt_prob'?)",
        "scenario[1] (\"S1\") missing key 'dlt_prob' (the true DLT probability of each level, "
        "non-decreasing, in [0, 1])",
    ]


def test_scenario_file_without_scenarios(tmp_path):
    errors = scenario_errors(tmp_path, "# nothing here\n")
    assert errors == ["no scenarios: add at least one [[scenario]] table with name and dlt_prob"]


def test_scenario_section_misspelt(tmp_path):
    errors = scenario_errors(tmp_path, '[[scenarios]]\nname = "S1"\ndlt_prob = [0.1]\n')
    assert errors == [
        "unknown key 'scenarios' (did you mean 'scenario'?)",
        "no scenarios: add at least one [[scenario]] table with name and dlt_prob",
    ]


def test_scenario_as_single_table(tmp_path):
    errors = scenario_errors(tmp_path, '[scenario]\nname = "S1"\ndlt_prob = [0.1]\n')
    assert errors == [
        'scenario = {name = "S1", dlt_prob = [0.1]}: must be an array of tables '
        "([[scenario]]), got a table"
    ]


def test_scenarios_from_dict():
    data = {"scenario": [{"name": "A", "dlt_prob": [0.1, 0.2]}]}
    assert scenarios_from_dict(data, "x.toml") == [Scenario("A", (0.1, 0.2))]


def test_dlt_prob_of_wrong_length():
    design = design_from_dict(
        {"name": "BOIN 30", "method": "boin", "target": 0.3, "levels": 3, "max_patients": 9},
        "designs/b.toml",
    )
    scenarios = [Scenario("S1", (0.1, 0.2, 0.3)), Scenario("S2", (0.1, 0.2, 0.3, 0.4))]
    with pytest.raises(ConfigError) as caught:
        check_scenarios_fit(design, scenarios, "scen.toml")
    assert caught.value.messages == [
        'scen.toml: scenario[2] ("S2") dlt_prob: has 4 values, but design "BOIN 30" '
        "(designs/b.toml) has 3 levels"
    ]
    check_scenarios_fit(design, scenarios[:1], "scen.toml")
