"""TITE-BOIN12: BOIN12 deciding with pending toxicity and efficacy outcomes.

Zhou, Y., Lin, R., Lee, J. J., Li, D., Wang, L., Li, R. & Yuan, Y. (2022). TITE-BOIN12: a
Bayesian phase I/II trial design to find the optimal biological dose with late-onset toxicity
and efficacy. *Stat Med* 41(11):1918–1931. doi:10.1002/sim.9337 — the approximated-likelihood
version (the paper also gives Bayesian data augmentation), after Lin, R. & Yuan, Y. (2020).
Time-to-event model-assisted designs for dose-finding trials with delayed toxicity.
*Biostatistics* 21:807–824. doi:10.1093/biostatistics/kxz007

A new patient is given a level at arrival, while earlier patients may still be within the DLT
window τ_T or the efficacy window τ_E. For each outcome q (T: DLT, E: response) at level j, a
patient is complete (the event seen, or the window closed) or pending with follow-up fraction
w_q = t/τ_q (event times uniform over the window, the paper's working assumption). With y_q
events seen, the approximated likelihood is binomial with the effective sample size

    ESS_q = (patients complete for q) + Σ_pending w_q,      π̂_q = y_q / ESS_q

(π̂_T = φ_T/2 and π̂_E = φ_E, the paper's starting values, while ESS_q = 0). A pending outcome
is imputed by its conditional probability given no event so far,

    P(event | none by w) = π̂ (1 − w) / (1 − π̂ w),

and the two outcomes of a patient with either pending are taken as independent. The expected
counts of the four outcomes (response without DLT, neither, both, DLT without response) give
BOIN12's quasi-responses x_j = Σ utility / 100 over the n_j patients treated, and the
desirability score 100·P(u_j > u_b) with u_j ~ Beta(1 + x_j, 1 + n_j − x_j). A level is
unacceptable when P(p_T > φ_T) ≥ c_t or P(p_E < φ_E) ≥ c_e under the approximated-likelihood
posteriors Beta(1 + y_q, 1 + ESS_q − y_q). BOIN12's rules (:class:`Boin12`) then run with the
DLT rate p̂ = π̂_T at the current level; the counts in its rules (n > 8 for dose exploration,
n ≥ n*) are the patients treated there.

Accrual is suspended while more than ``max_pending_fraction`` of the current level's patients
have a pending DLT outcome, or more than that fraction a pending response; the trial waits
until the next outcome is seen or a window closes. At the end every outcome is known and the
OBD is BOIN12's selection on complete data (:meth:`Boin12.select_obd`). With no outcome pending
at any decision (slow accrual, short windows) the design is BOIN12, decision for decision.

Choices the sources leave open, taken as the code's BOIN12 and TITE-BOIN conventions: BOIN12's
rules and tie-breaks are ``escalation``'s (see :mod:`theradose.methods.boin12`); a level is
judged acceptable only among d − 1, d, d + 1 at each decision; suspension is "more than" the
fraction (exactly half pending goes on), with no exception when the observed DLTs alone call for
de-escalation (unlike TITE-BOIN's); an outcome seen exactly at a decision time counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from theradose import special_functions as special
from theradose.methods.boin12 import EXPLORE_AFTER_N, Boin12, build_boin12, parse_boin12
from theradose.methods.boin12 import SPEC as BOIN12_SPEC
from theradose.methods.spec import DesignFields, MethodSpec, extended
from theradose.state import TrialState
from theradose.utility import quasi_responses
from theradose.validation import Interval, TomlTable


@dataclass(frozen=True)
class PendingData:
    """What a TITE-BOIN12 decision sees per level, [trial, level] each."""

    n: np.ndarray  # patients treated
    y: np.ndarray  # DLTs seen
    r: np.ndarray  # responses seen
    m_tox: np.ndarray  # patients with a pending DLT outcome
    m_eff: np.ndarray  # patients with a pending response outcome
    ess_tox: np.ndarray  # effective sample sizes
    ess_eff: np.ndarray
    p_tox: np.ndarray  # π̂_T = y / ESS_T (φ_T/2 while ESS_T = 0)
    p_eff: np.ndarray  # π̂_E = r / ESS_E (φ_E while ESS_E = 0)
    x: np.ndarray  # quasi-responses from the expected outcome counts


@dataclass(frozen=True)
class TiteBoin12(Boin12):
    """TITE-BOIN12 (``method = "tite-boin12"``): BOIN12 with pending outcomes.

    Attributes (besides :class:`Boin12`'s)
    ----------
    window : the DLT assessment window τ_T, months (``[timing] dlt_window_months``)
    efficacy_window : the efficacy assessment window τ_E, months (``efficacy_window_months``)
    max_pending_fraction : accrual is held while more than this fraction of the current level's
        patients are pending for the DLT outcome, or for the response
    """

    window: float = 1.0
    efficacy_window: float = 3.0
    max_pending_fraction: float = 0.5

    key = "tite-boin12"
    tite = True
    holds_accrual = True
    late_efficacy = True
    selects_on_complete_data = True  # the OBD estimate leaves patients with a pending outcome out
    references = (
        (
            "Zhou Y, Lin R, Lee JJ, Li D, Wang L, Li R, Yuan Y (2022). TITE-BOIN12: a Bayesian "
            "phase I/II trial design to find the optimal biological dose with late-onset "
            "toxicity and efficacy. Stat Med 41(11):1918–1931. doi:10.1002/sim.9337"
        ),
        (
            "Lin R, Yuan Y (2020). Time-to-event model-assisted designs for dose-finding trials "
            "with delayed toxicity. Biostatistics 21(4):807–824. doi:10.1093/biostatistics/kxz007"
        ),
        *Boin12.references,
    )
    estimate_labels = {  # noqa: RUF012 - a class constant
        "p_tox": "DLT rate, y/ESS (pending follow-up weighted)",
        "p_eff": "response rate, r/ESS (pending follow-up weighted)",
        "desirability": "desirability score, 100·P(utility > benchmark)",
        "acceptable": "acceptable (toxicity and efficacy)",
    }

    # -- the data with pending outcomes ----------------------------------------------------------

    def pending_data(self, state: TrialState) -> PendingData:
        """The per-level quantities of the approximated likelihood at the trials' current times
        (kept in the state's memo while times and enrolments are unchanged)."""
        key = (self.window, self.efficacy_window, state.time.tobytes(), state.places().tobytes())
        kept = None if state.memo is None else state.memo.get("tite_boin12")
        if kept is not None and kept[0] == key:
            return kept[1]
        data = self._pending_data(state)
        if state.memo is not None:
            state.memo["tite_boin12"] = (key, data)
        return data

    def _pending_data(self, state: TrialState) -> PendingData:
        n_trials, n_levels = state.n_trials, self.n_levels
        enrolled = state.patient_level >= 0
        cell = (np.arange(n_trials)[:, None] * n_levels + state.patient_level)[enrolled]

        def per_level(values=None) -> np.ndarray:
            weights = None if values is None else np.asarray(values, dtype=float)[enrolled]
            sums = np.bincount(cell, weights=weights, minlength=n_trials * n_levels)
            return sums.reshape(n_trials, n_levels)

        dlt = state.observed_dlt(self.window)
        tox_pending = state.pending(self.window)
        response = state.observed_response(self.efficacy_window)
        eff_pending = state.efficacy_pending(self.efficacy_window)
        # follow-up fractions of the pending patients (in [0, 1)), 0 for the others
        w_tox = np.where(tox_pending, state.followup(self.window), 0.0)
        w_eff = np.where(eff_pending, state.followup(self.efficacy_window), 0.0)
        n = per_level()
        y, r = per_level(dlt), per_level(response)
        m_tox, m_eff = per_level(tox_pending), per_level(eff_pending)
        # ESS = complete + Σ w over the pending = n − m + Σ w
        ess_tox, ess_eff = n - m_tox + per_level(w_tox), n - m_eff + per_level(w_eff)
        with np.errstate(invalid="ignore", divide="ignore"):
            p_tox = np.where(ess_tox > 0, y / ess_tox, self.target / 2)
            p_eff = np.where(ess_eff > 0, r / ess_eff, self.phi_e)
        at = np.maximum(state.patient_level, 0)
        rows = np.arange(n_trials)[:, None]
        t = np.where(tox_pending, _imputed(p_tox[rows, at], w_tox), dlt)
        e = np.where(eff_pending, _imputed(p_eff[rows, at], w_eff), response)
        y1, y3, y4 = per_level(e * (1 - t)), per_level(e * t), per_level(t * (1 - e))
        y2 = n - y1 - y3 - y4
        # BOIN12's own quasi-responses: equal to BOIN12's, bit for bit, when every outcome is
        # known
        x = quasi_responses(self.utility_weights, (y1, y2, y3, y4))
        return PendingData(
            n=n,
            y=y,
            r=r,
            m_tox=m_tox,
            m_eff=m_eff,
            ess_tox=ess_tox,
            ess_eff=ess_eff,
            p_tox=p_tox,
            p_eff=p_eff,
            x=x,
        )

    def complete_counts(self, state: TrialState):
        """(patients, DLTs, responses, both) per level among the patients whose two outcomes
        are both known, [trial, level] each: all patients once every window has closed."""
        complete = (
            (state.patient_level >= 0)
            & ~state.pending(self.window)
            & ~state.efficacy_pending(self.efficacy_window)
        )
        dlt = state.observed_dlt(self.window)
        response = state.observed_response(self.efficacy_window)
        at_level = state.patient_level[:, :, None] == np.arange(self.n_levels)
        inside = at_level & complete[:, :, None]
        return (
            inside.sum(axis=1),
            (inside & dlt[:, :, None]).sum(axis=1),
            (inside & response[:, :, None]).sum(axis=1),
            (inside & (dlt & response)[:, :, None]).sum(axis=1),
        )

    # -- BOIN12's rules on the pending data -------------------------------------------------------

    def _scores(self, state: TrialState, where: np.ndarray | None = None) -> np.ndarray:
        """Desirability per level, [trial, level] (only ``where`` it is True; NaN elsewhere)."""
        data = self.pending_data(state)
        return _at(
            where,
            lambda a: 100 * special.betaincc(1 + a[0], 1 + a[1] - a[0], self.benchmark / 100),
            data.x,
            data.n,
        )

    def _dlt_rate(self, state: TrialState) -> np.ndarray:
        return state.current(self.pending_data(state).p_tox)

    def acceptable(self, state: TrialState, where: np.ndarray | None = None) -> np.ndarray:
        """Levels not too toxic nor too inactive under the approximated-likelihood posteriors
        Beta(1 + y, 1 + ESS − y), [trial, level] (BOIN12's tables when nothing is pending;
        only ``where`` it is True, False elsewhere)."""
        data = self.pending_data(state)
        too_toxic = _at(
            where,
            lambda a: special.betaincc(1 + a[0], 1 + a[1] - a[0], self.target),
            data.y,
            data.ess_tox,
        )
        too_inactive = _at(
            where,
            lambda a: special.betainc(1 + a[0], 1 + a[1] - a[0], self.phi_e),
            data.r,
            data.ess_eff,
        )
        return (too_toxic < self.c_t) & (too_inactive < self.c_e)

    def _near_estimates(self, state: TrialState, near: np.ndarray):
        """The incomplete beta function of non-integer arguments costs ~5 µs a value: a
        decision reads only d − 1, d, d + 1 of the running trials, and while accrual is held
        the engine decides again for every trial each time one trial's next outcome is seen.
        So the values are kept in the state's memo and computed again only for trials whose
        time or enrolment changed (each trial's values depend on its own records alone)."""
        where = near & state.active[:, None]
        places = state.places()
        kept = None if state.memo is None else state.memo.get("tite_boin12_near")
        if kept is not None and kept[0].shape == state.time.shape:
            time, enrolled, known, score, ok = kept
            same = (time == state.time) & (enrolled == places)
            known = known & same[:, None]
            todo = where & ~known
            score, ok = score.copy(), ok.copy()
        else:
            known = np.zeros(where.shape, dtype=bool)
            todo = where
            score, ok = np.full(where.shape, np.nan), np.zeros(where.shape, dtype=bool)
        if todo.any():
            score[todo] = self._scores(state, todo)[todo]
            ok[todo] = self.acceptable(state, todo)[todo]
        stale = ~(known | todo)
        score[stale], ok[stale] = np.nan, False
        if state.memo is not None:
            state.memo["tite_boin12_near"] = (
                state.time.copy(),
                places.copy(),
                known | todo,
                score,
                ok,
            )
        return score, ok

    def select_mtd(self, state: TrialState) -> np.ndarray:
        """BOIN12's OBD selection on the patients with complete data (at the end of a trial,
        every patient)."""
        return self.select_obd(*self.complete_counts(state))

    def suspend(self, state: TrialState) -> np.ndarray:
        """Trials whose current level has more than ``max_pending_fraction`` of its patients
        pending for the DLT outcome or for the response, [trial]."""
        data = self.pending_data(state)
        n = state.current(data.n)
        limit = self.max_pending_fraction * n
        return (state.current(data.m_tox) > limit) | (state.current(data.m_eff) > limit)

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        data = self.pending_data(state)
        treated = data.n > 0
        return {
            "p_tox": np.where(treated, data.p_tox, np.nan),
            "p_eff": np.where(treated, data.p_eff, np.nan),
            "desirability": self._scores(state),
            "acceptable": self.acceptable(state),
        }

    def decision_basis(self, state: TrialState) -> dict[str, np.ndarray]:
        """At the current level (0-based ``level``): ``n`` patients, ``y`` DLTs and ``r``
        responses seen, ``m_tox``, ``m_eff`` pending, ``ess_tox``, ``ess_eff``, the DLT rate
        ``rate`` = y/ESS_T, BOIN's ``lambda_e``, ``lambda_d``, ``suspended`` and the
        ``max_pending_fraction`` it holds accrual beyond, [trial] each."""
        data = self.pending_data(state)
        lambda_e, lambda_d = self.lambdas
        n = state.current(data.n)
        count = lambda values: state.current(values).astype(np.int64)  # noqa: E731 (sums of 0/1)
        return {
            "level": np.maximum(state.level, 0),
            "n": count(data.n),
            "y": count(data.y),
            "r": count(data.r),
            "m_tox": count(data.m_tox),
            "m_eff": count(data.m_eff),
            "ess_tox": state.current(data.ess_tox),
            "ess_eff": state.current(data.ess_eff),
            "rate": state.current(data.p_tox),
            "lambda_e": np.full(n.shape, lambda_e),
            "lambda_d": np.full(n.shape, lambda_d),
            "suspended": self.suspend(state),
            "max_pending_fraction": np.full(n.shape, self.max_pending_fraction),
        }

    def describe(self) -> str:
        text = super().describe()
        return text.replace("BOIN12 (Lin et al. 2020)", "TITE-BOIN12 (Zhou et al. 2022)", 1) + (
            f" Outcomes are late: each new patient is given a level at arrival. A patient still "
            f"within the {self.window:g}-month DLT window or the {self.efficacy_window:g}-month "
            "efficacy window without the event counts by the fraction of the window followed "
            "up: for each outcome, the effective sample size ESS = (patients complete) + Σ "
            "follow-up fractions, the rate π̂ = events seen / ESS, and a pending outcome is "
            "imputed as π̂(1 − w)/(1 − π̂w); the DLT rate p̂ = y/ESS, the quasi-responses x from "
            "the expected outcomes of all patients treated, and acceptability under Beta(1 + "
            f"events, 1 + ESS − events). The counts in the rules (n > {EXPLORE_AFTER_N}, "
            f"n ≥ {self.n_star}) are patients treated. Accrual is suspended while more than "
            f"{self.max_pending_fraction:g} of the current level's patients are pending for "
            "the DLT or for the response. The OBD is selected once every outcome is known."
        )


def _at(where: np.ndarray | None, f, *arrays: np.ndarray) -> np.ndarray:
    """``f(arrays)`` elementwise, evaluated only ``where`` it is True (NaN elsewhere)."""
    if where is None:
        return f(arrays)
    out = np.full(arrays[0].shape, np.nan)
    out[where] = f([a[where] for a in arrays])
    return out


def _imputed(p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """P(event | none by follow-up fraction w) = p(1 − w)/(1 − pw), events uniform over the
    window."""
    return p * (1 - w) / (1 - p * w)


# ---------------------------------------------------------------------------------------------
# The design file


def parse_tite_boin12(table: TomlTable, fields: DesignFields) -> dict[str, Any]:
    options = parse_boin12(table, fields)
    options["max_pending_fraction"] = table.number(
        "max_pending_fraction", Interval(0.0, 1.0, high_closed=True), default=0.5
    )
    return options


def build_tite_boin12(fields: DesignFields, options: dict[str, Any]):
    settings = {k: v for k, v in options.items() if k != "max_pending_fraction"}
    boin12, constraints, stopping = build_boin12(fields, settings)
    method = extended(
        boin12,
        TiteBoin12,
        window=fields.timing.dlt_window_months,
        efficacy_window=fields.timing.efficacy_window_months,
        max_pending_fraction=options["max_pending_fraction"],
    )
    return method, constraints, stopping


SPEC = MethodSpec(
    key="tite-boin12",
    method_class=TiteBoin12,
    section="boin12",
    keys=(*BOIN12_SPEC.keys, "max_pending_fraction"),
    parse=parse_tite_boin12,
    build=build_tite_boin12,
)
