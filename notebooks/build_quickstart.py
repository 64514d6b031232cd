"""Build notebooks/01-quickstart.ipynb (stored without outputs): ``python build_quickstart.py``."""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# theradose quick start\n\n"
        "Compare a 3+3 and a BOIN design for a radiopharmaceutical on six activity levels: "
        "simulate both on the same virtual patients under five scenarios, read their operating "
        "characteristics (with exact values beside the simulated ones), print BOIN's decision "
        "table for the protocol, and ask a design what to do next in a real trial."
    ),
    new_code_cell(
        "%matplotlib inline\n"
        "from pathlib import Path\n\n"
        "from IPython.display import Markdown\n\n"
        "from theradose import report\n"
        "from theradose.config import load_design, load_scenarios\n"
        "from theradose.plots import plot_selection\n"
        "from theradose.study import run_recommendation, run_study\n\n"
        'DESIGNS = Path("..") / "designs"'
    ),
    new_markdown_cell(
        "## Designs and scenarios\n\n"
        "Design files map one-to-one onto a design; a scenario file gives the true DLT "
        "probability of each level."
    ),
    new_code_cell(
        'three_plus_three = load_design(DESIGNS / "three_plus_three.toml")\n'
        'boin = load_design(DESIGNS / "boin.toml")\n'
        'scenarios = load_scenarios(DESIGNS / "scenarios.toml")\n'
        "for s in scenarios:\n"
        "    print(s.name, s.dlt_prob)"
    ),
    new_markdown_cell(
        "## Operating characteristics\n\n"
        "`run_study` is what `theradose simulate` runs. `±` is the Monte Carlo standard error; "
        "the exact rows enumerate every trial pathway (3+3 and BOIN are count-based)."
    ),
    new_code_cell(
        "study = run_study(\n"
        "    [three_plus_three, boin], scenarios, n_trials=4000, seed=1, exact=True\n"
        ")\n"
        "report.print_study(study)"
    ),
    new_code_cell("fig = plot_selection(study)\nfig"),
    new_markdown_cell("## BOIN's decision table, as it would go in the protocol"),
    new_code_cell('Markdown(report.render_decision_table(boin, "markdown"))'),
    new_markdown_cell(
        "## Dose transition pathways\n\n"
        "`dose_paths` is what `theradose paths` runs: every outcome of the next cohorts (0 to 3 "
        "DLTs each) and the design's decision after it, decided by the same rules as the "
        "simulations. `1NNT` reads: level 1, two patients without a DLT, one with."
    ),
    new_code_cell(
        "from theradose.pathway_report import render_markdown as pathways_markdown\n"
        "from theradose.pathways import dose_paths\n\n"
        "nodes = dose_paths(boin, n_cohorts=2)\n"
        "Markdown(pathways_markdown(boin, nodes, 2))"
    ),
    new_markdown_cell(
        "## The statistical section of the protocol\n\n"
        "`theradose report` writes each design's protocol text, decision table or prior and "
        "pathways, the operating characteristics, the figures and a reproducibility appendix "
        "as one HTML file, a Word document or Markdown. From Python, `build_document` lays out "
        "the study above and `write_report` writes the format the suffix names."
    ),
    new_code_cell(
        "import tempfile\n\n"
        "from theradose.protocol_report import build_document, render_markdown, write_report\n\n"
        "document = build_document(study)\n"
        "folder = Path(tempfile.mkdtemp())\n"
        'for suffix in ("html", "docx", "md"):\n'
        '    for path in write_report(document, folder / f"report.{suffix}"):\n'
        '        print(path.relative_to(folder), f"{path.stat().st_size:,} bytes")\n'
        "text, _ = render_markdown(document)  # figures left out here; they are in the files\n"
        'Markdown(text[text.index("## Appendix A") :])'
    ),
    new_markdown_cell(
        "## A real trial: which level next?\n\n"
        "Outcomes are written cohort by cohort: the level (1-based), then N (no DLT) or T (DLT) "
        "per patient."
    ),
    new_code_cell(
        'result = run_recommendation(boin, "1NNN 2NNN 3NTN 3NNT")\n'
        "report.print_recommendation(result)\n"
        'report.recommendation_to_dict(result)["next_level"]'
    ),
    new_markdown_cell(
        "## Interim decisions on file: records, verification, the trial ledger\n\n"
        "A 177Lu-PSMA-like BOIN with organ limits, three meetings' patient files with each "
        "patient's measured kidney Gy/GBq. `recommend_recorded` is what `theradose recommend "
        "--record` runs: the decision and its record (inputs with their SHA-256, every design "
        "parameter, the data, the decision and the rule, the estimates and organ-dose "
        "admissibility). Each record goes into a hash-chained ledger; `verify_record` recomputes "
        "a decision from the record's own inputs."
    ),
    new_code_cell(
        "import tempfile\n\n"
        "from theradose.decision_record import recommend_recorded\n"
        "from theradose.history import history_rich, plot_history\n"
        "from theradose.ledger import append_record, check_ledger\n"
        "from theradose.verification import verify_record\n\n"
        'EXAMPLES = Path("..") / "examples" / "psma_interim"\n'
        'ledger = Path(tempfile.mkdtemp()) / "trial.jsonl"\n'
        "for meeting in (1, 2, 3):\n"
        "    result, record = recommend_recorded(\n"
        '        DESIGNS / "boin_psma_dosimetry.toml",\n'
        '        patients=EXAMPLES / f"meeting_{meeting}.csv",\n'
        "        dlt_window_days=56,\n"
        '        by="DEC",\n'
        '        note=f"meeting {meeting}",\n'
        "    )\n"
        "    append_record(ledger, record)\n"
        'decision = record["decision"]\n'
        'print(decision["rule"], "| ruled out:", decision["inadmissible_levels"])\n'
        'print("verified:", verify_record(record).ok)'
    ),
    new_code_cell(
        "check = check_ledger(ledger)\n"
        'print("ledger intact:", check.ok, "entries:", len(check.entries))\n'
        "report.print_recommendation(result)  # what meeting 3 saw\n"
        "from rich.console import Console\n\n"
        "Console().print(history_rich(check.entries))"
    ),
    new_code_cell("plot_history(check.entries)"),
]


def build(path: Path) -> None:
    notebook = new_notebook(
        cells=CELLS,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    nbformat.write(notebook, path)


if __name__ == "__main__":
    build(Path(__file__).with_name("01-quickstart.ipynb"))
