"""Dose-finding methods: each answers "which level next?" and "which level is the MTD?".

A method is a small object with pure functions of a :class:`~theradose.state.TrialState`:

- ``allowed(state) -> bool [trial, level]``: levels the method itself still permits (elimination);
- ``propose(state) -> (level [trial], stop_reason [trial])``: the level it would give the next
  cohort, and a :class:`~theradose.state.StopReason` value (0 to carry on);
- ``select_mtd(state) -> [trial]``: the level selected as MTD (``NO_LEVEL`` for none);
- ``level_summary(state) -> dict of [trial, level] arrays``: estimates shown by ``recommend``.

Optional: ``model_summary(state)`` (dict of [trial] arrays), ``prob_above_target(state, level)``
(model-based designs: the safety stop), ``mtd_is_next_level = True`` (the MTD is the level the
whole pipeline — proposal, masks, constraints — would give a next cohort: BLRM, EWOC), and
``estimate_labels`` (report labels of ``level_summary``'s entries).

The engine combines the proposal with the design's constraints and stopping rules, so the same
method runs in simulation, exact enumeration and interim recommendations.
"""

from theradose.methods.boin import Boin
from theradose.methods.three_plus_three import ThreePlusThree

__all__ = ["Boin", "ThreePlusThree"]
