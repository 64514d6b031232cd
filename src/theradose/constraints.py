"""Dose constraints: boolean masks over levels, combined by AND so their order never matters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theradose.state import TrialState


@dataclass(frozen=True)
class NoSkip:
    """Never assign a level more than one above the highest level tried so far."""

    def allowed(self, state: TrialState) -> np.ndarray:
        tried = state.n > 0
        highest = np.where(tried.any(axis=1), state.n_levels - 1 - tried[:, ::-1].argmax(axis=1), -1)
        return np.arange(state.n_levels)[None, :] <= (highest + 1)[:, None]

    def describe(self) -> str:
        return "Never skip an untried level when escalating."
