"""Small design and scenario factories shared by the tests (designs built without files)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from theradose.config import design_from_dict
from theradose.design import Design
from theradose.scenario import Scenario
from theradose.stopping import MaxPatients

REFERENCE = Path(__file__).resolve().parent / "reference"


def reference(name: str) -> dict:
    """A reference file of tests/reference (outputs of the established R packages; provenance in
    its README)."""
    return json.loads((REFERENCE / name).read_text())


_PROBABILITY = st.one_of(
    st.sampled_from([0.0, 1.0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6]),
    st.floats(0.0, 1.0, allow_nan=False),
)


def true_probabilities(n_levels: int):
    """Hypothesis strategy: non-decreasing true DLT probabilities of ``n_levels`` levels, with
    0, 1 and ties likely."""
    return st.lists(_PROBABILITY, min_size=n_levels, max_size=n_levels).map(
        lambda p: tuple(sorted(p))
    )


DESIGNS = Path(__file__).resolve().parents[1] / "designs"
# A kidney organ-dose limit of the test designs (177Lu-DOTATATE-like: 0.43 Gy/GBq, 23 Gy).
KIDNEY = {
    "name": "kidney",
    "gy_per_gbq_median": 0.43,
    "gy_per_gbq_cv": 0.37,
    "limit_gy": 23.0,
    "max_exceed_prob": 0.10,
}



def example_path(key: str) -> Path:
    """The first example design file in designs/ of method ``key`` without organ-dose limits."""
    for path in sorted(DESIGNS.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        if data.get("method") == key and "dosimetry" not in data:
            return path
    raise AssertionError(f"no example design in designs/ for method {key!r}")


def example_source(key: str) -> dict:
    """:func:`example_path`'s file as the dict it parses to (fresh each call, to edit)."""
    return tomllib.loads(example_path(key).read_text())


def example_design(key: str) -> Design:
    return design_from_dict(example_source(key), example_path(key))


def _built(source: dict, name: str) -> Design:
    """A design built as a design file would be (config reads the common keys, the method's
    SPEC its section), so the tests wire every method the one way users do."""
    return design_from_dict({"name": name, **source}, f"{name}.toml")


def boin_design(
    target: float = 0.3,
    n_levels: int = 6,
    max_patients: int = 30,
    cohort_size: int = 3,
    start_level: int = 0,
    max_at_dose: int = 100,
    **boin_options,
) -> Design:
    source = {
        "method": "boin",
        "target": target,
        "levels": n_levels,
        "max_patients": max_patients,
        "cohort_size": cohort_size,
        "start_level": start_level + 1,
        "boin": {"max_at_dose": max_at_dose, **boin_options},
    }
    return _built(source, f"BOIN {target:g}")


def three_plus_three_design(
    n_levels: int = 6,
    deescalate: bool = True,
    max_patients: int | None = None,
    target: float = 0.3,
    start_level: int = 0,
) -> Design:
    source = {
        "method": "3+3",
        "target": target,
        "levels": n_levels,
        "start_level": start_level + 1,
        "three_plus_three": {"deescalate": deescalate},
    }
    if max_patients is not None:
        source["max_patients"] = max_patients
    return _built(source, "3+3" if deescalate else "3+3 escalation only")


def scenario(*dlt_prob: float, name: str = "S") -> Scenario:
    return Scenario(name, tuple(dlt_prob))


# Two-sided tail probability of a normal deviate beyond 4 standard errors.
FOUR_SIGMA = 6.334e-5


def assert_pct_agrees(observed_pct, n_trials: int, expected_pct, label: str = "") -> None:
    """Assert observed selection percentages agree with exact ones within Monte Carlo error.

    Each observed count is tested against Binomial(n_trials, p_exact) two-sided at the 4-sigma
    level. For common outcomes this is the usual |diff| ≤ 4 SE; for rare ones (n·p of a few) the
    binomial tail is used because the normal approximation is badly skewed there.
    """
    from scipy.stats import binom

    observed = np.rint(np.atleast_1d(np.asarray(observed_pct, dtype=float)) * n_trials / 100)
    expected = np.atleast_1d(np.asarray(expected_pct, dtype=float)) / 100
    for i, (k, p) in enumerate(zip(observed, expected, strict=True)):
        p_value = 2 * min(binom.cdf(k, n_trials, p), binom.sf(k - 1, n_trials, p))
        assert p_value > FOUR_SIGMA, (
            f"{label}[{i}]: {100 * k / n_trials:.3f}% in {n_trials} trials vs exact "
            f"{100 * p:.4f}% (p-value {p_value:.2e})"
        )


def crm_design(
    skeleton=(
        0.122529358220233,
        0.203956007632824,
        0.3,
        0.401819436129518,
        0.50134644775517,
        0.592814046868704,
    ),
    target: float = 0.3,
    max_patients: int = 30,
    cohort_size: int = 3,
    model: str = "empiric",
    no_skip: bool = True,
    coherent: bool = True,
    estimate: str = "plugin",
    start_up: str = "none",
    safety_cutoff: float | None = None,
    safety_min_n: int = 3,
    max_at_dose: int | None = None,
) -> Design:
    """A CRM design; the default skeleton is dfcrm's getprior(0.05, 0.3, 3, 6)."""
    stopping = {"safety_cutoff": safety_cutoff, "safety_min_n": safety_min_n}
    stopping["max_at_dose"] = max_at_dose
    source = {
        "method": "crm",
        "target": target,
        "levels": len(skeleton),
        "max_patients": max_patients,
        "cohort_size": cohort_size,
        "crm": {
            "skeleton": list(skeleton),
            "model": model,
            "no_skip": no_skip,
            "coherent": coherent,
            "estimate": estimate,
            "start_up": start_up,
        },
        "stopping": {k: v for k, v in stopping.items() if v is not None},
    }
    if safety_cutoff is None:
        source["stopping"].pop("safety_min_n")
    return _built(source, f"CRM {model}")


# NBG 2008 (Neuenschwander, Branson & Gsponer, Stat Med 27:2420), section 3: activities, d*, prior.
NBG_DOSES = (1, 2.5, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250)


def blrm_design(
    doses=NBG_DOSES,
    reference_dose: float = 250.0,
    prior_mean=(2.15, 0.52),
    prior_sd=(0.84, 0.80),
    prior_corr: float = 0.2,
    target: float = 0.25,
    target_interval=(0.16, 0.33),
    max_overdose_prob: float = 0.25,
    max_increment: float | None = 1.0,
    max_patients: int = 36,
    cohort_size: int = 3,
    safety_cutoff: float | None = None,
) -> Design:
    """A BLRM design; the defaults are NBG 2008's example."""
    from theradose.constraints import MaxIncrement, NoSkip
    from theradose.methods.blrm import Blrm
    from theradose.stopping import SafetyStop

    doses = tuple(float(d) for d in doses)
    method = Blrm(
        doses,
        target,
        max_patients,
        reference_dose,
        tuple(prior_mean),
        tuple(prior_sd),
        prior_corr,
        tuple(target_interval),
        max_overdose_prob,
    )
    constraints = (NoSkip(),)
    if max_increment is not None:
        constraints = (MaxIncrement(doses, max_increment), NoSkip())
    stopping = [MaxPatients(max_patients)]
    if safety_cutoff is not None:
        stopping.append(SafetyStop(method, safety_cutoff))
    return Design(
        name="BLRM",
        method=method,
        target=target,
        n_levels=len(doses),
        start_level=0,
        cohort_size=cohort_size,
        max_patients=max_patients,
        doses=doses,
        constraints=constraints,
        stopping=tuple(stopping),
    )


def ewoc_design(
    n_levels: int = 6,
    target: float = 0.3,
    max_patients: int = 30,
    cohort_size: int = 3,
    **ewoc_options,
) -> Design:
    """An EWOC design on level numbers 1..n_levels (the ewoc package's reference runs), with its
    no-skipping rule (at most one level above the last cohort's)."""
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in ewoc_options.items()}
    source = {
        "method": "ewoc",
        "target": target,
        "levels": n_levels,
        "max_patients": max_patients,
        "cohort_size": cohort_size,
        "ewoc": options,
    }
    return _built(source, "EWOC")


def assert_simulation_matches_exact(design, scenarios, n_trials: int, seed: int) -> None:
    """Simulated operating characteristics agree with exact enumeration within Monte Carlo error:
    selection and "no MTD" % (binomial, 4 sigma), mean patients and DLTs per level (4 SE)."""
    from theradose.exact import exact_operating_characteristics
    from theradose.results import OperatingCharacteristics
    from theradose.simulation import simulate

    sims = simulate([design], list(scenarios), n_trials, seed=seed)[0]
    for scen, sim in zip(scenarios, sims, strict=True):
        exact = exact_operating_characteristics(design, scen)
        assert abs(exact["total_prob"] - 1.0) < 1e-12
        oc = OperatingCharacteristics.from_simulations(sim)
        values, se = oc.values, oc.se
        assert_pct_agrees(values["selection_pct"], sim.n_trials, exact["selection_pct"], scen.name)
        assert_pct_agrees(values["no_selection_pct"], sim.n_trials, exact["no_selection_pct"])
        for key in ("patients_mean", "dlt_mean"):
            diff = np.abs(np.array(values[key]) - exact[key])
            assert np.all(diff <= 4 * np.array(se[key]) + 1e-12), (scen.name, key, diff)
