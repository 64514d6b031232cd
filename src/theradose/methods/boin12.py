"""BOIN12: the Bayesian optimal interval phase I/II design, dose finding on a utility.

Lin, R., Zhou, Y., Yan, F., Li, D. & Yuan, Y. (2020). BOIN12: Bayesian optimal interval phase
I/II trial design for utility-based dose finding in immunotherapy and targeted therapies.
*JCO Precis Oncol* 4:1393–1402. doi:10.1200/PO.20.00257

Each patient's outcome is one of four: a response without a DLT (utility u10 = 100), neither
(u00), a response with a DLT (u11) and a DLT without a response (u01 = 0). At level j, with
y1 … y4 patients in those classes among n_j, the quasi-responses are

    x_j = (u10·y1 + u00·y2 + u11·y3 + u01·y4) / 100

and the desirability score of the level is 100 · P(u_j > u_b | data), u_j ~ Beta(1 + x_j,
1 + n_j − x_j), against the benchmark u_b = ū + (100 − ū)/2, where ū is the utility of a level
with DLT probability φ_T and response probability φ_E (the highest undesirable utility).

A level is acceptable when P(p_T > φ_T | data) < c_t and P(p_E < φ_E | data) < c_e under
Beta(1, 1) priors. After each cohort at level d, with p̂ = y/n the DLT rate there and λe, λd
BOIN's boundaries for φ_T (Liu & Yuan 2015; φ1 = 0.6 φ_T, φ2 = 1.4 φ_T):

1. n > 8, p̂ < λd, d not the top level and d + 1 untried: escalate (dose exploration, the
   paper's supplement);
2. p̂ ≥ λd: de-escalate (stay at level 1);
3. λe < p̂ < λd and n ≥ n*: d − 1 or d, whichever has the higher score (d − 1 on a tie), when
   d is acceptable, else d − 1; at level 1, stay if it is acceptable, else stop with no OBD
   (``escalation``'s reading of the rule, see :meth:`Boin12.propose`; the paper chooses among
   the acceptable ones of d − 1 and d);
4. no level among d − 1, d, d + 1 acceptable: stop, no OBD;
5. otherwise the acceptable level among d − 1, d, d + 1 with the highest score (the higher on a
   tie, as the BOIN12 app).

The trial stops at ``max_patients`` or when any level has treated ``max_at_dose``. The OBD: the
isotonic (unweighted) estimate of the DLT rate over the treated levels gives the MTD (closest to
φ_T, the higher on a tie); the OBD is the level at or below it with the highest score (the lower
on a tie). The rules and tie-breaks are those of the R package ``escalation`` 0.2.3
(``get_boin12`` and ``select_boin12_obd``, Brock; the decision code by M. Sweeting), which the
tests reproduce decision for decision. Unlike the paper, acceptability is judged only for
d − 1, d and d + 1 at each decision, with no lasting elimination (as ``escalation``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from theradose import special_functions as special
from theradose.isotonic import isotonic_increasing
from theradose.methods.base import Method
from theradose.methods.boin import boundaries
from theradose.methods.spec import DesignFields, MethodSpec, Parts
from theradose.state import NO_LEVEL, StopReason, TrialState, highest_level
from theradose.stopping import MaxAtDose, MaxPatients
from theradose.utility import outcome_classes, quasi_responses, total_utility
from theradose.validation import OPEN_UNIT, Interval, TomlTable

# The paper's scale: a response without a DLT is worth 100, a DLT without a response 0.
U_RESPONSE_ONLY = 100.0
U_DLT_ONLY = 0.0
EXPLORE_AFTER_N = 8  # dose exploration: escalate to an untried level once n > 8 here
DECISION_COLUMNS = {
    "n": "patients at the level",
    "best_of_three_if_dlt_le": "best of d−1, d, d+1 if DLTs ≤",
    "best_of_two_if_dlt_in": "best of d−1, d if DLTs in",
    "deescalate_if_dlt_ge": "de-escalate if DLTs ≥",
    "too_toxic_if_dlt_ge": "unacceptable (toxicity) if DLTs ≥",
    "too_inactive_if_responses_le": "unacceptable (efficacy) if responses ≤",
}


@dataclass(frozen=True)
class Boin12(Method):
    """BOIN12 (``method = "boin12"``): φ_T is the design's ``target``.

    Attributes
    ----------
    phi_e : the lowest acceptable response probability φ_E
    u11, u00 : utilities of a response with a DLT and of neither (the paper: 60 and 40)
    n_star : from n* patients at the current level, a DLT rate between λe and λd keeps the
        next cohort at d or d − 1
    c_t, c_e : a level is unacceptable when P(p_T > φ_T) ≥ c_t or P(p_E < φ_E) ≥ c_e
    """

    n_levels: int
    target: float
    max_patients: int
    phi_e: float = 0.25
    u11: float = 60.0
    u00: float = 40.0
    n_star: int = 6
    c_t: float = 0.95
    c_e: float = 0.90
    too_toxic: np.ndarray = field(init=False, repr=False, compare=False)  # [n, y] bool
    too_inactive: np.ndarray = field(init=False, repr=False, compare=False)  # [n, r] bool

    key = "boin12"
    count_based = False  # decides on responses as well as DLTs
    uses_efficacy = True
    references = (
        (
            "Lin R, Zhou Y, Yan F, Li D, Yuan Y (2020). BOIN12: Bayesian optimal interval phase "
            "I/II trial design for utility-based dose finding in immunotherapy and targeted "
            "therapies. JCO Precis Oncol 4:1393–1402. doi:10.1200/PO.20.00257"
        ),
        (
            "Liu S, Yuan Y (2015). Bayesian optimal interval designs for phase I clinical trials."
            " J R Stat Soc C 64:507–523. doi:10.1111/rssc.12089"
        ),
    )
    estimate_labels = {  # noqa: RUF012 - a class constant
        "p_tox": "observed DLT rate",
        "p_eff": "observed response rate",
        "desirability": "desirability score, 100·P(utility > benchmark)",
        "acceptable": "acceptable (toxicity and efficacy)",
    }

    def __post_init__(self) -> None:
        size = self.max_patients + 1
        n = np.arange(size)[:, None]
        k = np.arange(size)[None, :]
        valid = k <= n
        a, b = np.where(valid, 1 + k, 1), np.where(valid, 1 + n - k, 1)
        # R's pbeta(φ, 1 + y, 1 + n − y, lower.tail = FALSE) ≥ c_t, and pbeta(φ_E, …) ≥ c_e
        too_toxic = valid & (special.betaincc(a, b, self.target) >= self.c_t)
        too_inactive = valid & (special.betainc(a, b, self.phi_e) >= self.c_e)
        object.__setattr__(self, "too_toxic", too_toxic)
        object.__setattr__(self, "too_inactive", too_inactive)

    # -- the utility ---------------------------------------------------------------------------

    @property
    def utility_weights(self) -> tuple[float, float, float, float]:
        """Utilities of (a response without a DLT, neither, both, a DLT without a response)."""
        return (U_RESPONSE_ONLY, self.u00, self.u11, U_DLT_ONLY)

    def utility_table(self) -> list[dict[str, Any]]:
        """The utility of each outcome, as the protocol prints it."""
        w_eff, w_neither, w_both, w_tox = self.utility_weights
        return [
            {"outcome": "response, no DLT", "letter": "E", "utility": w_eff},
            {"outcome": "no response, no DLT", "letter": "N", "utility": w_neither},
            {"outcome": "response and DLT", "letter": "B", "utility": w_both},
            {"outcome": "DLT, no response", "letter": "T", "utility": w_tox},
        ]

    @property
    def highest_undesirable_utility(self) -> float:
        """ū: the mean utility of a level with DLT probability φ_T and response probability φ_E
        (independent), the highest the paper calls undesirable."""
        t, e = self.target, self.phi_e
        return (
            U_RESPONSE_ONLY * e * (1 - t)
            + self.u00 * (1 - t) * (1 - e)
            + self.u11 * t * e
            + U_DLT_ONLY * t * (1 - e)
        )

    @property
    def benchmark(self) -> float:
        """u_b = ū + (100 − ū)/2, on the 0–100 scale."""
        u_bar = self.highest_undesirable_utility
        return u_bar + (100 - u_bar) / 2

    @property
    def lambdas(self) -> tuple[float, float]:
        """BOIN's (λe, λd) for φ_T with φ1 = 0.6 φ_T and φ2 = 1.4 φ_T (BOIN's get.boundary)."""
        return boundaries(self.target, 0.6 * self.target, 1.4 * self.target)

    def quasi_responses(self, n, y, r, b) -> np.ndarray:
        """x = (u10·y1 + u00·y2 + u11·y3 + u01·y4)/100 from the counts per level (patients,
        DLTs, responses, both), in ``escalation``'s order of operations."""
        return quasi_responses(self.utility_weights, outcome_classes(n, y, r, b))

    def desirability(self, n, y, r, b) -> np.ndarray:
        """100 · P(utility > u_b | data) under a Beta(1, 1) prior, per level (untried levels:
        the prior's 100 − u_b)."""
        x = self.quasi_responses(n, y, r, b)
        return 100 * special.betaincc(1 + x, 1 + n - x, self.benchmark / 100)

    def acceptable(self, state: TrialState) -> np.ndarray:
        """Levels whose data do not make them too toxic or too inactive, [trial, level]."""
        n = np.minimum(state.n, self.max_patients)
        return (
            ~self.too_toxic[n, np.minimum(state.y, n)]
            & ~self.too_inactive[n, np.minimum(state.r, n)]
        )

    def utility(self, dlt_prob, eff_prob, both_prob) -> np.ndarray:
        """Mean utility per patient of each level: u10·P(E, no T) + u00·P(neither) + u11·P(E, T)
        + u01·P(T, no E)."""
        p_t, p_e, p_b = (np.asarray(p, dtype=float) for p in (dlt_prob, eff_prob, both_prob))
        return total_utility(self.utility_weights, outcome_classes(1, p_t, p_e, p_b))

    def true_obd(self, dlt_prob, eff_prob, utility) -> int:
        """The acceptable level (p_T ≤ φ_T, p_E ≥ φ_E, finite utility) with the highest true
        utility, the lower on a tie; ``NO_LEVEL`` when none is acceptable."""
        p_t, p_e, u = (np.asarray(p, dtype=float) for p in (dlt_prob, eff_prob, utility))
        ok = (p_t <= self.target + 1e-12) & (p_e >= self.phi_e - 1e-12) & np.isfinite(u)
        if not ok.any():
            return NO_LEVEL
        return int(np.argmax(np.where(ok, np.round(u, 9), -np.inf)))

    # -- decisions -----------------------------------------------------------------------------

    def _scores(self, state: TrialState) -> np.ndarray:
        return self.desirability(state.n, state.y, state.r, state.b)

    def _dlt_rate(self, state: TrialState) -> np.ndarray:
        """The DLT rate at each trial's current level that the boundaries judge, [trial]."""
        return state.current(state.y) / np.maximum(state.current(state.n), 1)

    def _near_estimates(self, state: TrialState, near: np.ndarray):
        """(desirability, acceptable), [trial, level], as a decision reads them: only where
        ``near`` (d − 1, d, d + 1) in running trials need be right."""
        return self._scores(state), self.acceptable(state)

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        rows = np.arange(state.n_trials)
        top = self.n_levels - 1
        d = np.maximum(state.level, 0)
        n_d = state.n[rows, d]
        p_t = self._dlt_rate(state)
        lambda_e, lambda_d = self.lambdas
        levels = np.arange(self.n_levels)
        near = np.abs(levels[None, :] - d[:, None]) <= 1
        score, acceptable = self._near_estimates(state, near)
        acceptable = acceptable & near
        below = np.maximum(d - 1, 0)
        up = np.minimum(d + 1, top)

        explore = (n_d > EXPLORE_AFTER_N) & (p_t < lambda_d) & (d < top) & (state.n[rows, up] == 0)
        deescalate = p_t >= lambda_d
        between = (p_t > lambda_e) & (p_t < lambda_d) & (n_d >= self.n_star)
        none = ~acceptable.any(axis=1)

        # Between the boundaries with n ≥ n*, escalation 0.2.3 reads `currentdose-1 %in%
        # admissible` as `currentdose - (1 %in% admissible)` (R's %in% binds before -), so: above
        # level 1, d − 1 or d by the score when d is acceptable (whether or not d − 1 is), else
        # d − 1; at level 1, stay when it is acceptable, else stop with no OBD. Kept, so that
        # decisions are escalation's; the paper restricts the choice to acceptable levels.
        here_ok = acceptable[rows, d]
        higher_here = score[rows, d] > score[rows, below]  # which.max: d − 1 on a tie
        two = np.where(d >= 1, np.where(here_ok & higher_here, d, below), 0)
        two_stops = (d == 0) & ~here_ok
        masked = np.where(acceptable, score, -np.inf)
        best = highest_level(acceptable & (masked == masked.max(axis=1, keepdims=True)))
        proposal = np.select(
            [explore, deescalate, between, none],
            [up, below, two, d],
            default=np.maximum(best, 0),
        )
        stop = np.zeros(state.n_trials, dtype=np.int8)
        stop[~explore & ~deescalate & ((between & two_stops) | (~between & none))] = (
            StopReason.NONE_ACCEPTABLE
        )
        not_started = state.level < 0
        proposal = np.where(not_started, state.next_level, proposal)
        stop[not_started] = 0
        return proposal, stop

    def select_mtd(self, state: TrialState) -> np.ndarray:
        """The OBD as ``escalation``'s ``select_boin12_obd`` (:meth:`select_obd`)."""
        return self.select_obd(state.n, state.y, state.r, state.b)

    def select_obd(self, n, y, r, b) -> np.ndarray:
        """The OBD from the counts per level (patients, DLTs, responses, both), [trial]: the
        highest treated level whose isotonic DLT-rate estimate is closest to φ_T is the MTD; the
        OBD is the level at or below it with the highest desirability score (the lowest on a
        tie)."""
        treated = n > 0
        rate = y / np.maximum(n, 1)
        iso = isotonic_increasing(rate, treated.astype(float))
        distance = np.where(treated, np.abs(iso - self.target), np.inf)
        closest = treated & (distance == distance.min(axis=1, keepdims=True))
        mtd = highest_level(closest)
        levels = np.arange(self.n_levels)
        score = np.where(levels[None, :] <= mtd[:, None], self.desirability(n, y, r, b), -np.inf)
        return np.where(mtd == NO_LEVEL, NO_LEVEL, score.argmax(axis=1))

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        n = np.maximum(state.n, 1)
        treated = state.n > 0
        return {
            "p_tox": np.where(treated, state.y / n, np.nan),
            "p_eff": np.where(treated, state.r / n, np.nan),
            "desirability": self._scores(state),
            "acceptable": self.acceptable(state),
        }

    def decision_basis(self, state: TrialState) -> dict[str, np.ndarray]:
        """At the current level (0-based ``level``): ``n``, ``y``, ``r`` (responses), the DLT
        rate and BOIN's ``lambda_e``, ``lambda_d``, [trial] each."""
        n, y = state.current(state.n), state.current(state.y)
        lambda_e, lambda_d = self.lambdas
        return {
            "level": np.maximum(state.level, 0),
            "n": n,
            "y": y,
            "r": state.current(state.r),
            "rate": np.where(n > 0, y / np.maximum(n, 1), np.nan),
            "lambda_e": np.full(n.shape, lambda_e),
            "lambda_d": np.full(n.shape, lambda_d),
        }

    # -- protocol text -------------------------------------------------------------------------

    def decision_rows(self, n_max: int | None = None) -> list[dict[str, Any]]:
        """Per number treated at the current level: the DLT counts that leave the choice among
        d − 1, d, d + 1 to the desirability score, those that restrict it to d − 1 and d, those
        that de-escalate, and the counts that make a level unacceptable."""
        n_max = self.max_patients if n_max is None else n_max
        lambda_e, lambda_d = self.lambdas
        rows = []
        for n in range(1, n_max + 1):
            ys = np.arange(n + 1)
            rate = ys / n
            down = rate >= lambda_d
            two = (rate > lambda_e) & ~down & (n >= self.n_star)
            three = ~down & ~two
            toxic = np.flatnonzero(self.too_toxic[min(n, self.max_patients), : n + 1])
            inactive = np.flatnonzero(self.too_inactive[min(n, self.max_patients), : n + 1])
            rows.append(
                {
                    "n": n,
                    "best_of_three_if_dlt_le": int(ys[three][-1]) if three.any() else None,
                    "best_of_two_if_dlt_in": (int(ys[two][0]), int(ys[two][-1]))
                    if two.any()
                    else None,
                    "deescalate_if_dlt_ge": int(ys[down][0]) if down.any() else None,
                    "too_toxic_if_dlt_ge": int(toxic[0]) if toxic.size else None,
                    "too_inactive_if_responses_le": int(inactive[-1]) if inactive.size else None,
                }
            )
        return rows

    def protocol_table(self, cohort_size: int, max_patients: int):
        """The decision table at the current level (see :meth:`decision_rows`)."""
        return DECISION_COLUMNS, self.decision_rows()

    def describe(self) -> str:
        lambda_e, lambda_d = self.lambdas
        utilities = ", ".join(
            f"{row['outcome']} {row['utility']:g}" for row in self.utility_table()
        )
        return (
            f"BOIN12 (Lin et al. 2020): utilities {utilities}; a level's desirability is "
            f"100·P(utility > {self.benchmark:g} | data), its quasi-responses x = Σ utility/100 "
            f"under a Beta(1, 1) prior. A level is unacceptable when P(DLT probability > "
            f"{self.target:g}) ≥ {self.c_t:g} or P(response probability < {self.phi_e:g}) ≥ "
            f"{self.c_e:g}. After each cohort at level d with DLT rate p̂ = y/n: escalate to an "
            f"untried d + 1 once n > {EXPLORE_AFTER_N} and p̂ < λd; de-escalate if p̂ ≥ λd = "
            f"{lambda_d:.4f}; if λe = {lambda_e:.4f} < p̂ < λd with n ≥ {self.n_star}, d − 1 or "
            "d by the higher desirability when d is acceptable, else d − 1 (at level 1: stay if "
            "acceptable, else stop with no OBD); otherwise the acceptable level among d − 1, d, "
            "d + 1 with the highest desirability (stop with no OBD when none is acceptable). The "
            "trial also stops at the maximum sample size or when any level has treated the "
            "maximum per level. The OBD is the level with the highest desirability at or below "
            f"the treated level whose isotonic DLT-rate estimate is closest to {self.target:g}."
        )


# ---------------------------------------------------------------------------------------------
# The design file

DEFAULT_MAX_AT_DOSE = 12  # Lin et al. (2020) and escalation's example: stop at 12 on a level
UTILITY = Interval(0.0, 100.0, low_closed=True, high_closed=True)


def parse_boin12(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    options: dict[str, Any] = {
        "phi_e": table.number("phi_e", OPEN_UNIT, required="the lowest acceptable response rate"),
        "u11": table.number("u11", UTILITY, default=60.0),
        "u00": table.number("u00", UTILITY, default=40.0),
        "n_star": table.integer("n_star", 1, default=6),
        "c_t": table.number("c_t", OPEN_UNIT, default=0.95),
        "c_e": table.number("c_e", OPEN_UNIT, default=0.90),
        "max_at_dose": table.integer("max_at_dose", 1, default=DEFAULT_MAX_AT_DOSE),
    }
    return options


def build_boin12(fields: DesignFields, options: dict[str, Any]) -> Parts:
    settings = {k: v for k, v in options.items() if k != "max_at_dose"}
    method = Boin12(fields.n_levels, fields.target, fields.max_patients, **settings)
    stopping = (
        MaxPatients(fields.max_patients),
        MaxAtDose(options["max_at_dose"], any_level=True),
    )
    return method, (), stopping


SPEC = MethodSpec(
    key="boin12",
    method_class=Boin12,
    section="boin12",
    keys=("phi_e", "u11", "u00", "n_star", "c_t", "c_e", "max_at_dose"),
    parse=parse_boin12,
    build=build_boin12,
)
