"""The method contract: what every dose-finding method answers, and what it declares it can do.

After Brock's ``escalation`` (one interface every selector answers) and emcee's moves (a small
base, each algorithm a small object citing its paper). A method is a frozen dataclass holding
only its maths; the decision pipeline (:mod:`theradose.engine`) combines it with the design's
constraints and stopping rules, so simulation, exact enumeration, dose transition pathways and
interim recommendations all run the same rules.

Capabilities are declared class attributes, read by the pipeline and the presentation layer;
nothing probes a method with ``getattr``/``hasattr``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from theradose.state import TrialState

if TYPE_CHECKING:
    from theradose.design import Design


class Method:
    """Base of every dose-finding method.

    A method answers, for a batch of trials (arrays over trials, see
    :class:`~theradose.state.TrialState`):

    - ``allowed(state) -> bool [trial, level]``: levels the method itself still permits
      (elimination); all by default;
    - ``propose(state) -> (level [trial], stop_reason [trial])``: the level it would give the next
      cohort and a :class:`~theradose.state.StopReason` value (0 to carry on). ``state.admissible``
      [trial, level] holds the levels the organ-dose limits admit (the dose range as the design
      may use it now), for methods whose rules depend on the top of the range (3+3);
    - ``select_mtd(state) -> [trial]``: the level selected as MTD (``NO_LEVEL`` for none); the
      pipeline then keeps it inside the admissible (and, with ``select_tried_only``, tried) levels;
    - ``level_summary(state) -> dict of [trial, level] arrays``: per-level estimates;
    - ``model_summary(state) -> dict of [trial] arrays``: a model's parameters (empty by default);
    - ``decision_basis(state) -> dict of [trial] arrays``: the quantities that decided the last
      proposal, shown with an interim answer (empty by default);
    - ``design_warnings(design) -> list[str]``: why the design, with its settings, may not behave
      as intended (a prior that forbids the start level, a level the rule can never give), one
      line each without the file's name (:mod:`theradose.sense` adds it); none by default.

    Declared capabilities (class attributes):

    ``key``: the value of ``method`` in a design file. ``count_based``: decides on the counts
    (n, y) per level, the current level and the last cohort alone (exact enumeration needs it).
    ``model_based``: has a posterior and ``prob_above_target(state, level)`` (the safety stop).
    ``tite``: decides from follow-up times at each arrival (needs ``[timing]``). ``holds_accrual``:
    may suspend accrual (``suspend(state) -> [trial]``); ``turns_away``: arrivals during a
    suspension are turned away rather than waiting (``start_up_wait_ends(state) -> [trial]``: when
    the wait ends). ``selects_on_complete_data``: the MTD estimate of an interim answer leaves
    pending patients out (TITE-BOIN). ``mtd_is_next_level``: the MTD is the level
    the pipeline would give a next cohort (BLRM, EWOC). ``select_tried_only``: the default of the
    design option of that name (rule-based designs select among levels that treated patients; the
    model-based conventions of dfcrm and ewoc may select an untried level). ``estimate_labels``:
    report labels of ``level_summary``'s entries. ``references``: the papers the method comes
    from, as a protocol cites them. ``uses_efficacy``: decides on responses as well as DLTs
    (BOIN12): it needs scenarios with ``eff_prob``, reads outcome strings with the efficacy
    letters (E, B), answers ``utility(dlt_prob, eff_prob, both_prob) -> [level]`` (the true
    mean utility of each level) and ``true_obd(dlt_prob, eff_prob, utility) -> level`` (the
    optimal biological dose the operating characteristics judge it against), and selects an OBD
    rather than an MTD. ``late_efficacy``: a time-to-event method that sees each response only
    when it occurs within the efficacy window (TITE-BOIN12): it needs ``[timing]
    efficacy_window_months``, the engine records each patient's response time and waits for
    pending responses as well as pending DLTs while accrual is held.
    """

    key: ClassVar[str] = ""
    count_based: ClassVar[bool] = True
    model_based: ClassVar[bool] = False
    tite: ClassVar[bool] = False
    holds_accrual: ClassVar[bool] = False
    turns_away: ClassVar[bool] = False
    mtd_is_next_level: ClassVar[bool] = False
    selects_on_complete_data: ClassVar[bool] = False
    select_tried_only: ClassVar[bool] = True
    uses_efficacy: ClassVar[bool] = False
    late_efficacy: ClassVar[bool] = False
    estimate_labels: ClassVar[dict[str, str]] = {}
    references: ClassVar[tuple[str, ...]] = ()

    def allowed(self, state: TrialState) -> np.ndarray:
        return np.ones((state.n_trials, state.n_levels), dtype=bool)

    def propose(self, state: TrialState) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def select_mtd(self, state: TrialState) -> np.ndarray:
        raise NotImplementedError

    def level_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        return {}

    def model_summary(self, state: TrialState) -> dict[str, np.ndarray]:
        return {}

    def decision_basis(self, state: TrialState) -> dict[str, np.ndarray]:
        return {}

    def design_warnings(self, design: Design) -> list[str]:
        """Sense checks of ``design`` (whose method this is): problems that do not make it invalid
        but that its user should know before running it, one line each."""
        return []

    def utility(
        self, dlt_prob: np.ndarray, eff_prob: np.ndarray, both_prob: np.ndarray
    ) -> np.ndarray:
        """The true mean utility per patient of each level, [level] (``uses_efficacy``)."""
        raise NotImplementedError(f"method {self.key!r} does not use efficacy")

    def true_obd(self, dlt_prob: np.ndarray, eff_prob: np.ndarray, utility: np.ndarray) -> int:
        """The true optimal biological dose, 0-based (``NO_LEVEL``: none), (``uses_efficacy``)."""
        raise NotImplementedError(f"method {self.key!r} does not use efficacy")

    def suspend(self, state: TrialState) -> np.ndarray:
        return np.zeros(state.n_trials, dtype=bool)

    def start_up_wait_ends(self, state: TrialState) -> np.ndarray:
        raise NotImplementedError(f"method {self.key!r} does not turn arrivals away")

    def protocol_table(
        self, cohort_size: int, max_patients: int
    ) -> tuple[dict[str, str], list[dict]] | None:
        """The method's table for a protocol — (column key → label, rows) — or None: decision
        tables for rule-based and interval designs, the prior for model-based ones."""
        return None

    def describe(self) -> str:
        """The method in a sentence of protocol text ('' when the header says it all)."""
        return ""
