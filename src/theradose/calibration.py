"""CRM skeleton calibration: simulate every candidate skeleton on the same virtual patients.

Lee, S. M. & Cheung, Y. K. (2009). Model calibration in the continual reassessment method.
*Clin Trials* 6:227–238. doi:10.1177/1740774509105076
Lee, S. M. & Cheung, Y. K. (2011). Calibration of prior variance in the Bayesian continual
reassessment method. *Stat Med* 30:2081–2089. doi:10.1002/sim.4139

A candidate is a Lee–Cheung skeleton (halfwidth δ of the indifference interval, prior guess ν of
the MTD). Every candidate is simulated under every scenario on the same patients (common random
numbers), so differences between candidates are not Monte Carlo noise between patient sets. The
best candidate maximises the average probability of correct selection (PCS) over the scenarios;
the worst-case PCS is shown beside it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from theradose.config import ConfigError, design_from_dict
from theradose.design import Design
from theradose.results import OperatingCharacteristics
from theradose.scenario import Scenario
from theradose.simulation import simulate


class CalibrationError(ValueError):
    """The design or the candidate grid cannot be calibrated (one line, for the CLI)."""


@dataclass(frozen=True)
class Candidate:
    halfwidth: float
    prior_mtd: int  # 1-based
    skeleton: tuple[float, ...]
    pcs: tuple[float, ...]  # [scenario] percent
    pcs_se: tuple[float, ...]

    @property
    def mean_pcs(self) -> float:
        return float(np.mean(self.pcs))

    @property
    def worst_pcs(self) -> float:
        return float(np.min(self.pcs))


@dataclass(frozen=True)
class CalibrationResult:
    design: Design
    scenarios: tuple[Scenario, ...]
    candidates: tuple[Candidate, ...]
    skipped: tuple[str, ...]  # candidates whose skeleton is degenerate, and why
    n_trials: int
    seed: int

    @property
    def best(self) -> Candidate:
        """The candidate with the highest average PCS (the first on a tie)."""
        return max(self.candidates, key=lambda c: c.mean_pcs)


def parse_grid(text: str) -> list[float]:
    """``"0.02:0.20:0.01"`` (start:stop:step, stop included) or ``"0.04,0.06"`` → values."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = int(np.floor((stop - start) / step + 1e-9)) + 1
            return [round(start + i * step, 10) for i in range(count)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CalibrationError(
            f"halfwidth grid {text!r}: expected start:stop:step (e.g. 0.02:0.20:0.01) "
            "or a comma-separated list"
        ) from None


def candidate_designs(
    design: Design, halfwidths: Sequence[float], prior_mtds: Sequence[int]
) -> tuple[list[tuple[float, int, Design]], list[str]]:
    """The design with each Lee–Cheung skeleton, built through the design file's own schema so
    every other setting (stopping rules, restrictions) is kept; degenerate skeletons skipped."""
    _require_crm(design)
    built, skipped = [], []
    for prior_mtd in prior_mtds:
        if not 1 <= prior_mtd <= design.n_levels:
            raise CalibrationError(f"prior MTD {prior_mtd} is outside 1..{design.n_levels}")
        for halfwidth in halfwidths:
            source = copy.deepcopy(design.source)
            source.setdefault("crm", {})["skeleton"] = {
                "halfwidth": halfwidth,
                "prior_mtd": prior_mtd,
            }
            source["name"] = f"halfwidth {halfwidth:g}, prior MTD {prior_mtd}"
            try:
                candidate = design_from_dict(source, design.path or "<design>")
            except ConfigError as error:
                skipped.append(f"halfwidth {halfwidth:g}, prior MTD {prior_mtd}: {error}")
                continue
            built.append((halfwidth, prior_mtd, candidate))
    if not built:
        raise CalibrationError("no candidate skeleton is usable: " + "; ".join(skipped))
    return built, skipped


def _require_crm(design: Design) -> None:
    if design.method_key != "crm":
        raise CalibrationError(
            f"design {design.name!r} uses method {design.method_key!r}: skeleton calibration "
            'is for method = "crm"'
        )


def default_prior_mtd(design: Design) -> int:
    """The design's own prior MTD guess, or the level whose skeleton is closest to the target."""
    table = design.source.get("crm", {}).get("skeleton")
    if isinstance(table, dict) and "prior_mtd" in table:
        return int(table["prior_mtd"])
    skeleton = np.asarray(design.method.model.skeleton)
    return int(np.argmin(np.abs(skeleton - design.target))) + 1


def calibrate_skeleton(
    design: Design,
    scenarios: Sequence[Scenario],
    halfwidths: Sequence[float],
    prior_mtds: Sequence[int] | None = None,
    *,
    n_trials: int = 2_000,
    seed: int = 1,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    cluster: Any = None,
) -> CalibrationResult:
    """Simulate each candidate skeleton under each scenario; PCS per candidate and scenario.

    ``cluster`` (:class:`theradose.cluster.DaskCluster`): run the chunks on a Dask cluster
    instead of ``workers`` local processes, with identical results."""
    _require_crm(design)
    prior_mtds = list(prior_mtds) if prior_mtds else [default_prior_mtd(design)]
    built, skipped = candidate_designs(design, halfwidths, prior_mtds)
    sims = simulate(
        [d for _, _, d in built],
        list(scenarios),
        n_trials,
        seed,
        workers=workers,
        progress=progress,
        cluster=cluster,
    )
    candidates = []
    for (halfwidth, prior_mtd, candidate), row in zip(built, sims, strict=True):
        oc = [OperatingCharacteristics.from_simulations(sim) for sim in row]
        candidates.append(
            Candidate(
                halfwidth=halfwidth,
                prior_mtd=prior_mtd,
                skeleton=tuple(candidate.method.model.skeleton),
                pcs=tuple(o.values["pcs"] for o in oc),
                pcs_se=tuple(o.se["pcs"] for o in oc),
            )
        )
    return CalibrationResult(
        design=design,
        scenarios=tuple(scenarios),
        candidates=tuple(candidates),
        skipped=tuple(skipped),
        n_trials=n_trials,
        seed=seed,
    )
