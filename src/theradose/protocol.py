"""A design described in protocol language: the paragraphs of a protocol's statistical section
(design, dose-finding rule, constraints, stopping, final selection, timing) with the references,
each written by the part it describes (the method, each constraint, each stopping rule)."""

from __future__ import annotations

import json

from theradose import __version__
from theradose.design import Design

PROTOCOL_FORMATS = ("text", "markdown", "json")

# The sources of the organ-dose limits (kidney 23 Gy / BED 40 Gy, red marrow 2 Gy).
ORGAN_LIMIT_REFERENCES = (
    "Emami B et al. (1991). Tolerance of normal tissue to therapeutic irradiation. Int J Radiat "
    "Oncol Biol Phys 21:109–122.",
    "Bodei L et al. (2008). Eur J Nucl Med Mol Imaging 35:1847.",
    "Menda Y et al. (2018). J Nucl Med 59:1692.",
)

BACKFILL_REFERENCE = (
    "Zhao Y, Yuan Y, Korn EL, Freidlin B (2024). Backfilling patients in phase I dose-escalation "
    "trials using Bayesian optimal interval design (BOIN). Clin Cancer Res 30:673–679."
)
DOSAGE_OPTIMISATION_REFERENCE = (
    "U.S. Food and Drug Administration (2024). Optimizing the Dosage of Human Prescription Drugs "
    "and Biological Products for the Treatment of Oncologic Diseases. Guidance for Industry."
)
RADIOPHARMACEUTICAL_DOSAGE_REFERENCE = (
    "U.S. Food and Drug Administration (2025). Oncology Therapeutic Radiopharmaceuticals: "
    "Dosage Optimization During Clinical Development. Draft Guidance for Industry (docket "
    "FDA-2025-D-1757)."
)


def _levels(design: Design) -> str:
    if design.doses is None:
        return f"{design.n_levels} dose levels"
    unit = f" {design.dose_unit}" if design.dose_unit else ""
    values = ", ".join(f"{dose:g}" for dose in design.doses)
    dosimetry = design.dosimetry
    if dosimetry is not None and dosimetry.dose_basis == "absorbed_dose":
        return (
            f"{design.n_levels} levels of cumulative absorbed dose prescribed to the "
            f"{dosimetry.prescribe_to} ({values}{unit}), each patient's activity set from their "
            "own measured dosimetry"
        )
    return f"{design.n_levels} levels of administered activity ({values}{unit})"


def protocol_sections(design: Design) -> list[tuple[str, str]]:
    """(heading, paragraph) pairs describing ``design`` for a protocol."""
    sections = [
        (
            "Design",
            f"{design.name}: a phase 1 dose-escalation trial over {_levels(design)}, starting at "
            f"level {design.start_level + 1}, in cohorts of {design.cohort_size}, with at most "
            f"{design.max_patients} patients; the target DLT probability is {design.target:g}.",
        ),
        ("Dose-finding rule", design.method.describe()),
    ]
    constraints = [c.describe() for c in design.constraints if not c.organ_limits]
    if constraints:
        sections.append(("Dose constraints", " ".join(constraints)))
    if design.dosimetry is not None and design.dosimetry.organs:
        sections.append(
            (
                "Organ-dose limits",
                design.dosimetry.describe().replace("\n", " ")
                + " No cohort is given a level the limits rule out, and the MTD is never such "
                "a level.",
            )
        )
    rules = [r.describe() for r in design.stopping if r.can_fire(design.max_patients)]
    sections.append(("Stopping rules", " ".join(rules)))
    tried = (
        "The MTD is chosen among levels that treated patients."
        if design.selects_tried_only
        else "The MTD may be a level not yet tried, as the model estimates it."
    )
    sections.append(("Final selection", tried))
    if design.timing is not None:
        how = (
            "The design decides at each new patient's arrival from the follow-up so far."
            if design.method.tite
            else "Each cohort's DLT window completes before the next decision."
        )
        sections.append(("Accrual and follow-up", f"{design.timing.describe()} {how}"))
    if design.backfill is not None:
        sections.append(("Backfilling", design.backfill.describe()))
    if design.optimisation is not None:
        organ_limits = design.dosimetry is not None and bool(design.dosimetry.organs)
        text = design.optimisation.describe(organ_limits)
        sections.append(("Randomised dose optimisation", text))
    return sections


def protocol_references(design: Design) -> list[str]:
    refs = list(design.method.references)
    if design.dosimetry is not None and design.dosimetry.organs:
        refs += ORGAN_LIMIT_REFERENCES
    if design.backfill is not None:
        refs.append(BACKFILL_REFERENCE)
    if design.optimisation is not None:
        refs += [DOSAGE_OPTIMISATION_REFERENCE, RADIOPHARMACEUTICAL_DOSAGE_REFERENCE]
    return refs


def render_protocol(design: Design, fmt: str = "text") -> str:
    """The design's protocol text as plain text, Markdown or JSON."""
    sections = protocol_sections(design)
    refs = protocol_references(design)
    source = f"theradose {__version__}" + (f" ({design.path})" if design.path else "")
    if fmt == "json":
        document = {
            "version": __version__,
            "design": design.name,
            "design_path": design.path,
            "sections": [{"heading": h, "text": t} for h, t in sections],
            "references": refs,
        }
        return json.dumps(document, indent=1, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        lines = [f"# {design.name}", ""]
        for heading, text in sections:
            lines += [f"## {heading}", "", text, ""]
        lines += ["## References", ""] + [f"- {ref}" for ref in refs] + ["", f"_{source}_"]
        return "\n".join(lines) + "\n"
    if fmt == "text":
        lines = []
        for heading, text in sections:
            lines += [f"{heading}. {text}", ""]
        lines += ["References:"] + [f"  {ref}" for ref in refs] + ["", source]
        return "\n".join(lines) + "\n"
    raise ValueError(f"format {fmt!r} is not one of {', '.join(PROTOCOL_FORMATS)}")
