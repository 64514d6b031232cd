"""Outcome strings: one real trial's cohorts written as ``"1NNN 2NTN"``.

The convention of Brock's R package ``escalation`` (Brock, K. 2020. escalation: a modular
approach to dose-finding clinical trials. R package, CRAN): whitespace separates cohorts; each
cohort is the 1-based dose level it was given, then one letter per patient, ``N`` for no
dose-limiting toxicity (DLT) and ``T`` for a DLT. Lower-case letters are accepted.

Designs that use efficacy (BOIN12) read ``escalation``'s phase I/II letters as well
(``parse_phase1_2_outcomes``): ``E`` a response without a DLT, ``B`` both a response and a DLT,
``T`` a DLT without a response, ``N`` neither.

Inside the package a cohort is ``(level, dlts)`` with a 0-based level and one flag per patient —
``(level, dlts, responses)`` with efficacy — which is what
:func:`theradose.recommendation.recommend` takes.

>>> parse_outcomes("1NNN 2ntn")
[(0, (False, False, False)), (1, (False, True, False))]
>>> format_outcomes([(0, (False, False, False)), (1, (False, True, False))])
'1NNN 2NTN'
>>> parse_outcomes("1NEB", efficacy=True)
[(0, (False, False, True), (False, True, True))]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from theradose.limits import MAX_OUTCOME_CHARS, MAX_TRIAL_PATIENTS, shown_text

# (level, DLT flags) or, with efficacy, (level, DLT flags, response flags)
Cohort = tuple[int, tuple[bool, ...]] | tuple[int, tuple[bool, ...], tuple[bool, ...]]

_TOKEN = re.compile(r"(\d*)(.*)", re.DOTALL)
_LETTERS = {"N": False, "T": True}
# letter → (DLT, response)
_EFFICACY_LETTERS = {"N": (False, False), "T": (True, False), "E": (False, True), "B": (True, True)}


class OutcomeError(ValueError):
    """An outcome string that cannot be read; the message names the token and what is allowed."""


def parse_outcomes(
    text: str, n_levels: int | None = None, efficacy: bool = False
) -> list[Cohort]:
    """Read an outcome string into cohorts of (0-based level, DLT flags).

    Parameters
    ----------
    text : str
        Cohorts separated by whitespace, e.g. ``"1NNN 2NTN"``; an empty string is a trial that
        has treated nobody yet.
    n_levels : int, optional
        The design's number of levels; when given, a level above it is an error.
    efficacy : bool
        Read the letters N, T, E, B (a design that uses efficacy); each cohort then also holds,
        per patient, whether the patient responded.

    Returns
    -------
    list of (int, tuple of bool) or, with efficacy, (int, tuple of bool, tuple of bool)
        One entry per cohort in the order treated: the 0-based level and, per patient, whether
        the patient had a DLT (and whether they responded).

    Raises
    ------
    OutcomeError
        For the first bad token, naming its position, the token and what is allowed.
    """
    if len(text) > MAX_OUTCOME_CHARS:
        raise OutcomeError(
            f"outcomes: {len(text):,} characters; at most {MAX_OUTCOME_CHARS:,} are read"
        )
    cohorts = []
    n_patients = 0
    for position, token in enumerate(text.split(), start=1):
        cohort = _parse_token(token, position, n_levels, efficacy)
        n_patients += len(cohort[1])
        if n_patients > MAX_TRIAL_PATIENTS:
            raise OutcomeError(
                f"outcomes: more than {MAX_TRIAL_PATIENTS:,} patients (by cohort {position}); "
                "no trial is that large"
            )
        cohorts.append(cohort)
    return cohorts


def _parse_token(token: str, position: int, n_levels: int | None, efficacy: bool) -> Cohort:
    where = f"outcome token {position} {shown_text(token)}"
    digits, letters = _TOKEN.fullmatch(token).groups()
    if not digits:
        raise OutcomeError(
            f"{where}: a cohort starts with its dose level (1-based), then N or T per patient, "
            "e.g. '2NTN'"
        )
    allowed = f"1..{n_levels}" if n_levels is not None else "1 or more"
    if len(digits) > 9 or not digits.isascii():
        raise OutcomeError(
            f"{where}: level {shown_text(digits, 12)} is not a dose level (levels are {allowed})"
        )
    level = int(digits)
    if level < 1:
        raise OutcomeError(f"{where}: level {level} is not a dose level (levels are {allowed})")
    if n_levels is not None and level > n_levels:
        raise OutcomeError(
            f"{where}: level {level} is above the design's {n_levels} levels (allowed {allowed})"
        )
    if not letters:
        raise OutcomeError(
            f"{where}: the cohort has no patients; give N (no DLT) or T (DLT) for each patient"
        )
    if efficacy:
        for letter in letters:
            if letter.upper() not in _EFFICACY_LETTERS:
                raise OutcomeError(
                    f"{where}: {shown_text(letter)} is not N (neither), T (DLT), E (response) "
                    "or B (both)"
                )
        pairs = [_EFFICACY_LETTERS[letter.upper()] for letter in letters]
        return level - 1, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    for letter in letters:
        if letter.upper() not in _LETTERS:
            if letter.upper() in _EFFICACY_LETTERS:
                raise OutcomeError(
                    f"{where}: {shown_text(letter)} (a response) is read only by designs that "
                    "use efficacy (method boin12); give N (no DLT) or T (DLT)"
                )
            raise OutcomeError(f"{where}: {shown_text(letter)} is not N (no DLT) or T (DLT)")
    return level - 1, tuple(_LETTERS[letter.upper()] for letter in letters)


def format_outcomes(cohorts: Iterable[tuple]) -> str:
    """Write cohorts of (0-based level, DLT flags) as an outcome string such as ``"1NNN 2NTN"``.

    Parameters
    ----------
    cohorts : iterable of (int, sequence of bool) or (int, sequence of bool, sequence of bool)
        The cohorts in the order treated; with response flags, the letters are N, T, E, B.

    Returns
    -------
    str
        The inverse of :func:`parse_outcomes` (upper-case letters, single spaces).
    """
    return " ".join(f"{cohort[0] + 1}" + _letters(*cohort[1:]) for cohort in cohorts)


def _letters(dlts: Sequence[bool], responses: Sequence[bool] | None = None) -> str:
    if responses is None:
        return "".join("T" if dlt else "N" for dlt in dlts)
    return "".join(
        ("B" if resp else "T") if dlt else ("E" if resp else "N")
        for dlt, resp in zip(dlts, responses, strict=True)
    )
