"""Decision records (``recommend --record``, ``--json``'s ``record``) and ``theradose verify``."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import theradose
from theradose.cli import app
from theradose.decision_record import (
    RECORD_FORMAT,
    canonical_json,
    design_parameters,
    read_record,
    recommend_recorded,
    record_hash,
)
from theradose.verification import differences, verify_record

ROOT = Path(__file__).resolve().parents[1]
DESIGNS = ROOT / "designs"
EXAMPLES = ROOT / "examples" / "psma_interim"
runner = CliRunner()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def boin(tmp_path) -> Path:
    """A copy of the BOIN example design that a test may edit."""
    path = tmp_path / "boin.toml"
    shutil.copy(DESIGNS / "boin.toml", path)
    return path


@pytest.fixture
def psma(tmp_path) -> tuple[Path, Path]:
    """A copy of the 177Lu-PSMA design with organ limits and of meeting 3's patient file."""
    design = tmp_path / "psma.toml"
    patients = tmp_path / "meeting_3.csv"
    shutil.copy(DESIGNS / "boin_psma_dosimetry.toml", design)
    shutil.copy(EXAMPLES / "meeting_3.csv", patients)
    return design, patients


def record_of(tmp_path, *args) -> dict:
    out = tmp_path / "record.json"
    result = invoke("recommend", *args, "--record", out)
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# What a record holds


def test_record_of_an_outcome_string(tmp_path, boin):
    rec_path, json_path = tmp_path / "rec.json", tmp_path / "out.json"
    result = invoke(
        "recommend", boin, "-o", "1NNN 2NTN", "--record", rec_path, "--json", json_path,
        "--by", "Dr Ada", "--note", "meeting 2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(rec_path.read_text(encoding="utf-8"))
    assert record["format"] == RECORD_FORMAT and record["format_version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["created_utc"])
    assert record["by"] == "Dr Ada" and record["note"] == "meeting 2"
    software = record["software"]
    assert software["theradose"] == theradose.__version__
    assert set(software["packages"]) == {"numpy", "scipy"}  # no pymc: it was not used
    assert record["command"]["argv"] == sys.argv and record["command"]["cwd"]
    # the design: its bytes' hash, its text exactly, every parameter with the defaults
    design = record["design"]
    assert design["sha256"] == sha256(boin)
    assert design["text"].encode("utf-8") == boin.read_bytes()
    assert design["source"]["method"] == "boin" and design["method"] == "boin"
    parameters = design["parameters"]
    assert parameters["method"]["type"] == "Boin"
    assert parameters["method"]["p_saf"] == 0.18
    assert parameters["method"]["elimination_min_n"] == 3  # a default, not in the file
    assert parameters["start_level"] == 1 and parameters["cohort_size"] == 3
    assert [rule["type"] for rule in parameters["stopping"]] == ["MaxPatients", "MaxAtDose"]
    assert all(rule["text"] for rule in parameters["stopping"])
    # the data: the string and its hash, the cohorts as read
    data = record["data"]
    assert data["kind"] == "outcomes" and data["text"] == "1NNN 2NTN"
    assert data["sha256"] == hashlib.sha256(b"1NNN 2NTN").hexdigest()
    assert data["cohorts"] == [
        {"cohort": 1, "level": 1, "dlt": [0, 0, 0]},
        {"cohort": 2, "level": 2, "dlt": [0, 1, 0]},
    ]
    assert data["patients"] is None and data["n_patients"] == 6 and data["n_dlt"] == 1
    # the decision, the rule, the estimates
    decision = record["decision"]
    assert decision["action"] == "next_level" and decision["next_level"] == 2
    assert decision["basis"]["level"] == 2 and decision["basis"]["direction"] == 0
    assert "boin at level 2: stay" in decision["rule"]
    assert [level["level"] for level in record["levels"]] == [1, 2, 3, 4, 5, 6]
    assert record["levels"][1]["p_est"] == pytest.approx(1 / 3, abs=0.02)
    assert record["mcmc"] is None and record["options"]["engine"] == "grid"
    assert "Next cohort: level 2" in record["printed"]
    assert record["record_sha256"] == record_hash(record)
    # --json: the recommendation's keys as before, and the same record inside
    whole = json.loads(json_path.read_text(encoding="utf-8"))
    assert whole["next_level"] == 2 and whole["record"] == record


def test_record_of_a_patient_file_with_kidney_dosimetry(tmp_path, psma):
    design, patients = psma
    record = record_of(tmp_path, design, "--patients", patients, "--dlt-window-days", 56)
    data = record["data"]
    assert data["kind"] == "patients" and data["sha256"] == sha256(patients)
    assert data["text"].encode("utf-8") == patients.read_bytes()
    assert data["path"] == str(patients)
    assert [p["kidney_gy_per_gbq"] for p in data["patients"]][:3] == [0.45, 0.52, 0.48]
    assert data["patients"][8]["pending"] is True and data["patients"][7]["dlt_day"] == 38
    assert data["patients"][0]["red_marrow_gy_per_gbq"] is None  # not measured
    decision = record["decision"]
    assert decision["action"] == "wait" and decision["next_level"] is None
    assert decision["pending_patients"] == [9] and "patient 9 is still" in decision["rule"]
    assert decision["inadmissible_levels"] == [4, 5]
    levels = record["levels"]
    assert [level["admissible"] for level in levels] == [True, True, True, False, False]
    assert levels[3]["p_exceed_kidney"] > 0.10 >= levels[2]["p_exceed_kidney"]
    kidney = record["organ_limits"][0]
    assert kidney == {
        "organ": "kidney", "limit_gy": 23.0, "limit_bed_gy": None, "max_exceed_prob": 0.1,
        "cycles": 4,
    }  # fmt: skip
    assert record["options"]["dlt_window_days"] == 56
    assert record["design"]["parameters"]["dosimetry"]["organs"][0]["limit_gy"] == 23.0
    assert record["design"]["parameters"]["constraints"][0]["dosimetry"] == {"same_as": "dosimetry"}
    assert any("complete data" in note for note in record["notes"])


def test_record_of_a_time_to_event_design(tmp_path):
    patients = tmp_path / "tite.csv"
    patients.write_text(
        "level,dlt,followup_days,dlt_day\n2,0,120,\n2,0,100,\n2,0,80,\n3,0,40,\n3,1,30,20\n"
        "3,0,10,\n",
        encoding="utf-8",
    )
    record = record_of(tmp_path, DESIGNS / "tite_boin.toml", "--patients", patients)
    parameters = record["design"]["parameters"]
    assert parameters["method"]["type"] == "TiteBoin" and parameters["method"]["window"] == 3.0
    assert parameters["timing"]["dlt_window_months"] == 3.0 and parameters["timing"]["text"]
    basis = record["decision"]["basis"]
    assert {"m", "stft", "p_tilde", "suspended"} <= set(basis)
    assert record["decision"]["action"] in ("next_level", "suspend")
    assert record["data"]["patients"][4]["dlt_day"] == 20
    assert verify_record(record).ok


def test_every_example_design_has_json_parameters():
    from theradose.config import load_design

    for path in sorted(DESIGNS.glob("*.toml")):
        if "[[scenario]]" in path.read_text(encoding="utf-8") or path.name.startswith("sweep_"):
            continue  # scenario files, sweep grid files
        parameters = design_parameters(load_design(path))
        canonical_json(parameters)  # strict JSON: no NaN, nothing unserialisable
        assert parameters["method"]["type"], path
        assert "sampler" not in parameters["method"]


@pytest.mark.slow
def test_record_of_an_mcmc_run_and_its_verification(tmp_path):
    out = tmp_path / "mcmc.json"
    result = invoke(
        "recommend", DESIGNS / "blrm.toml", "-o", "2NNN 3NNT", "--engine", "mcmc",
        "--draws", 100, "--tune", 100, "--chains", 2, "--seed", 7, "--record", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text(encoding="utf-8"))
    mcmc = record["mcmc"]
    assert (mcmc["seed"], mcmc["draws"], mcmc["tune"], mcmc["chains"]) == (7, 100, 100, 2)
    assert set(mcmc["diagnostics"]) == {"theta[log_alpha]", "theta[log_beta]"}
    assert isinstance(mcmc["divergences"], int) and mcmc["max_r_hat"] > 0.9
    assert record["options"]["mcmc"]["seed"] == 7
    assert {"pymc", "arviz"} <= set(record["software"]["packages"])
    check = invoke("verify", out)
    assert check.exit_code == 0, check.output  # the same seed gives the same draws


# ---------------------------------------------------------------------------------------------
# verify


def test_verify_passes_on_an_untouched_record(tmp_path, psma):
    design, patients = psma
    out = tmp_path / "r.json"
    invoke("recommend", design, "-p", patients, "--dlt-window-days", 56, "--record", out)
    result = invoke("verify", out)
    assert result.exit_code == 0, result.output
    assert f"same: design file {design}" in result.output
    assert f"same: data file {patients}" in result.output
    assert "same: decision recomputed from the record's inputs: wait" in result.output
    assert result.output.rstrip().endswith("verified: the decision recomputes as recorded")


def test_verify_accepts_the_json_output(tmp_path, boin):
    out = tmp_path / "out.json"
    assert invoke("recommend", boin, "-o", "1NNN", "--json", out).exit_code == 0
    assert invoke("verify", out).exit_code == 0


def test_verify_names_an_edited_design(tmp_path, boin):
    out = tmp_path / "r.json"
    invoke("recommend", boin, "-o", "1NNN 2NTN", "--record", out)
    boin.write_text(boin.read_text().replace("p_tox = 0.42 ", "p_tox = 0.33 "))
    result = invoke("verify", out)
    assert result.exit_code == 1, result.output
    assert f"DIFFERENT: design file {boin} was changed since the record" in result.output
    assert "key boin.p_tox: 0.33, recorded 0.42" in result.output
    assert "on the files as they are now, the decision is: next level 1" in result.output
    # the record's own inputs still give its decision
    assert "same: decision recomputed from the record's inputs: next level 2" in result.output
    assert "NOT verified: 1 difference" in result.output


def test_verify_names_a_comment_only_edit(tmp_path, boin):
    out = tmp_path / "r.json"
    invoke("recommend", boin, "-o", "1NNN", "--record", out)
    boin.write_text(boin.read_text() + "# amended\n")
    result = invoke("verify", out)
    assert result.exit_code == 1
    assert "only comments or layout changed" in result.output


def test_verify_names_changed_data(tmp_path, psma):
    design, patients = psma
    out = tmp_path / "r.json"
    invoke("recommend", design, "-p", patients, "--dlt-window-days", 56, "--record", out)
    lines = patients.read_text().splitlines(keepends=True)
    lines[7] = lines[7].replace("3,0,65,,0.55", "3,1,65,12,0.55")
    patients.write_text("".join(lines))
    result = invoke("verify", out)
    assert result.exit_code == 1, result.output
    assert f"DIFFERENT: data file {patients} was changed since the record" in result.output
    assert "line 8: '3,1,65,12,0.55', recorded '3,0,65,,0.55'" in result.output


def test_verify_names_a_different_version(tmp_path, boin, monkeypatch):
    out = tmp_path / "r.json"
    invoke("recommend", boin, "-o", "1NNN", "--record", out)
    monkeypatch.setattr(theradose, "__version__", "99.0")
    result = invoke("verify", out)
    assert result.exit_code == 1
    assert (
        f"DIFFERENT: theradose 99.0 is installed; the record was made by "
        f"{read_record(out)['software']['theradose']}"
    ) in result.output


def test_verify_names_a_changed_package_version(tmp_path, boin):
    out = tmp_path / "r.json"
    invoke("recommend", boin, "-o", "1NNN", "--record", out)
    record = json.loads(out.read_text())
    record["software"]["packages"]["numpy"] = "1.0.0"
    record["record_sha256"] = record_hash(record)
    out.write_text(json.dumps(record))
    result = invoke("verify", out)
    assert result.exit_code == 1
    assert "the record was made with 1.0.0" in result.output


def test_verify_detects_an_edited_record(tmp_path, boin):
    out = tmp_path / "r.json"
    invoke("recommend", boin, "-o", "1NNN 2NTN", "--record", out)
    record = json.loads(out.read_text())
    record["decision"]["next_level"] = 3
    out.write_text(json.dumps(record, indent=2))
    result = invoke("verify", out)
    assert result.exit_code == 1
    assert "the record was edited after it was written" in result.output
    assert "decision.next_level: 2, recorded 3" in result.output
    # a forger who also recomputes record_sha256 is still caught by the recomputation
    record["record_sha256"] = record_hash(record)
    out.write_text(json.dumps(record, indent=2))
    result = invoke("verify", out)
    assert result.exit_code == 1 and "edited after" not in result.output
    assert "the decision recomputed from the record's inputs differs" in result.output


def test_verify_detects_an_edited_embedded_design(tmp_path, boin):
    out = tmp_path / "r.json"
    invoke("recommend", boin, "-o", "1NNN 2NTN", "--record", out)
    record = json.loads(out.read_text())
    record["design"]["text"] = record["design"]["text"].replace("p_tox = 0.42", "p_tox = 0.33")
    record["record_sha256"] = record_hash(record)
    out.write_text(json.dumps(record))
    result = invoke("verify", out)
    assert result.exit_code == 1
    assert "the record's embedded design does not match its recorded sha256" in result.output
    assert "design.parameters.method.p_tox: 0.33, recorded 0.42" in result.output


def test_verify_without_the_files_checks_the_decision_only(tmp_path, psma):
    design, patients = psma
    out = tmp_path / "r.json"
    invoke("recommend", design, "-p", patients, "--dlt-window-days", 56, "--record", out)
    design.unlink()
    patients.unlink()
    result = invoke("verify", out)
    assert result.exit_code == 0, result.output
    assert "not checked: design file not found" in result.output
    assert "not checked: data file not found" in result.output
    assert "same: decision recomputed" in result.output


def test_verify_with_the_files_given(tmp_path, psma):
    design, patients = psma
    out = tmp_path / "r.json"
    invoke("recommend", design, "-p", patients, "--dlt-window-days", 56, "--record", out)
    moved = tmp_path / "moved.toml"
    design.rename(moved)
    assert invoke("verify", out, "--design", moved, "--data", patients).exit_code == 0
    other = invoke("verify", out, "--design", DESIGNS / "boin.toml")
    assert other.exit_code == 1 and "was changed since the record" in other.output
    missing = invoke("verify", out, "--design", tmp_path / "nowhere.toml")
    assert missing.exit_code == 2 and "nowhere.toml: file not found" in missing.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "file not found"),
        ("{not json", "not JSON"),
        ('{"format": "something else"}', "not a theradose decision record"),
        (json.dumps({"format": RECORD_FORMAT}), "missing format_version"),
        ("[1, 2]", "not a theradose decision record"),
    ],
)
def test_verify_an_unreadable_record_exits_2(tmp_path, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    result = invoke("verify", path)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output


def test_recommend_errors_are_unchanged(tmp_path):
    """Reading the files once for the record keeps recommend's one-line errors."""
    result = invoke("recommend", tmp_path / "missing.toml", "-o", "1NNN")
    assert result.exit_code == 2 and "missing.toml: file not found" in result.stderr
    bad = tmp_path / "p.csv"
    bad.write_text("level,dlt,followup_days\n1,2,10\n")
    result = invoke("recommend", DESIGNS / "boin.toml", "-p", bad)
    assert result.exit_code == 2
    assert "needs the DLT window" in result.stderr  # both problems, as before
    assert "'2' must be 0 (no DLT) or 1 (DLT)" in result.stderr


def test_library_record_matches_the_cli(boin):
    result, record = recommend_recorded(boin, "1NNN 2NTN", by="me")
    assert record["decision"]["next_level"] == result.recommendation.next_level + 1
    assert verify_record(record).ok


def test_differences_are_listed_by_level():
    recorded = {"levels": [{"level": 1, "p": 0.1}, {"level": 2, "p": 0.2}]}
    now = {"levels": [{"level": 1, "p": 0.1}, {"level": 2, "p": 0.25}]}
    assert differences(recorded, now) == ["levels[level 2].p: 0.25, recorded 0.2"]
    assert differences({"x": 1.0}, {"x": 1.0 + 1e-12}) == []
    assert differences({"x": True}, {"x": 1}) == ["x: 1, recorded True"]
