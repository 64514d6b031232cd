"""The utility of a patient's outcome, DLT and response together (Lin, Zhou, Yan, Li & Yuan
2020, BOIN12, *JCO Precis Oncol* 4:1393): the four outcome classes and their utility, in one
order of operations shared by BOIN12's decisions, TITE-BOIN12's, the randomised stage's rule
and the reported mean utility, so that they agree bit for bit.
"""

from __future__ import annotations

import numpy as np


def outcome_classes(n, y, r, b) -> tuple:
    """Patients per outcome class (response only, neither, both, DLT only) from the counts of
    patients ``n``, DLTs ``y``, responses ``r`` and patients with both ``b``; with ``n = 1``
    and probabilities, the classes' probabilities."""
    return r - b, n - y - r + b, b, y - b


def total_utility(weights, classes) -> np.ndarray:
    """u10·y1 + u00·y2 + u11·y3 + u01·y4: the utility ``weights`` (response only, neither, both,
    DLT only) times the ``classes``' counts (or probabilities), in this one order of operations
    so that every figure built on it (quasi-responses, mean utility) agrees bit for bit."""
    w_eff, w_neither, w_both, w_tox = weights
    y1, y2, y3, y4 = classes
    return w_eff * y1 + w_neither * y2 + w_both * y3 + w_tox * y4


def quasi_responses(weights, classes) -> np.ndarray:
    """BOIN12's quasi-responses x = (u10·y1 + u00·y2 + u11·y3 + u01·y4)/100 from the outcome
    ``classes``' counts (Lin et al. 2020), in ``escalation``'s order of operations."""
    return total_utility(weights, classes) / 100
