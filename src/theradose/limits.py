"""What theradose accepts: every bound on inputs in one place, with the checks of command-line
values that use them.

The bounds keep a mistake (a typo, a unit slip, a hostile file) from exhausting the machine or
running for days; none limits a real phase 1 trial. Values inside the bounds but unlike any
published radiopharmaceutical give warnings (exit code 0), never errors:
:data:`PLAUSIBLE_GY_PER_GBQ` and :data:`MAX_PLAUSIBLE_CV`. The "Limits" section of
docs/commands.md lists them for users.
"""

from __future__ import annotations

import os

# -- files ------------------------------------------------------------------------------------
MAX_TOML_BYTES = 1_000_000  # a design or scenario file (the largest example is ~5 kB)
MAX_TOML_NESTING = 32  # arrays and tables inside each other (a correlation matrix is 2)
MAX_PATIENT_FILE_BYTES = 20_000_000  # a patient CSV (~100,000 rows)
MAX_INTEGER = 2**31 - 1  # any integer in a design or scenario file, unless a key says less

# -- designs ----------------------------------------------------------------------------------
MAX_LEVELS = 50
MAX_PATIENTS = 1_000  # max_patients of a design; also bounds cohort_size and max_at_dose
MAX_COHORT_SIZE = 100

# -- runs -------------------------------------------------------------------------------------
MAX_TRIALS = 100_000_000  # --trials
# trials × max_patients of one design: 10^10 virtual patients is hours of work already. Within a
# chunk of trials (simulation.CHUNK_TRIALS = 10,000) MAX_PATIENTS bounds the per-patient arrays
# at 10^7 entries each (~0.5 GB for a plain design).
MAX_PATIENT_TRIALS = 10_000_000_000
SEED_BOUND = 2**128  # seeds are integers 0 <= seed < 2^128 (numpy SeedSequence entropy)
MAX_FORCED_WORKERS = 256  # --workers with --force-workers; without it, at most the CPU count
MAX_GRID_POINTS = 10_000  # designs of one sweep (grid points × design files)
MAX_MCMC_DRAWS = 100_000  # --draws and --tune
MAX_MCMC_CHAINS = 16

# -- one real trial (recommend) ---------------------------------------------------------------
MAX_TRIAL_PATIENTS = 100_000  # patients in an outcome string or a patient file
MAX_OUTCOME_CHARS = 1_000_000
MAX_DEVIATIONS_SHOWN = 5  # printed "Deviation" lines; the JSON keeps them all

# -- warnings for legal but implausible values -------------------------------------------------
MAX_PLAUSIBLE_CV = 3.0  # a between-patient CV above 300% is most likely a percentage (35 = 35%)
# Absorbed dose per unit activity of published radiopharmaceuticals spans about 0.01 Gy/GBq
# (177Lu red marrow) to a few hundred (225Ac-PSMA-617 salivary glands, ~2.3 Sv_RBE5/MBq:
# Kratochwil et al., J Nucl Med 2017;58:1624); a decade's margin on each side.
PLAUSIBLE_GY_PER_GBQ = (0.001, 1_000.0)


def cpu_count() -> int:
    """CPUs this process may use (its affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def shown_text(text: str, limit: int = 40) -> str:
    """``text`` quoted for a message, cut to ``limit`` characters with its length when longer."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def integer_option(flag: str, text: str, low: int, high: int, meaning: str = "") -> tuple:
    """Read a command-line integer ``low <= value <= high`` (``high`` exclusive when it is
    :data:`SEED_BOUND`); returns ``(value, None)`` or ``(None, problem)``, the problem one line
    naming the flag, the value given and the allowed range."""
    exclusive = high == SEED_BOUND
    allowed = f"from {low:,} to {high:,}" if not exclusive else f"{low} <= {flag[2:]} < 2^128"
    what = f"must be an integer {allowed}{f' ({meaning})' if meaning else ''}"
    cleaned = text.strip().replace("_", "")
    digits = cleaned.lstrip("+-")
    if not digits.isdigit() or not digits.isascii() or len(digits) > 60:
        hint = ""
        try:
            number = float(cleaned)
            if number.is_integer() and low <= number <= high:
                hint = f"; write {int(number)} in digits"
            elif number.is_integer():
                hint = f" ({text.strip()} = {number:,.0f})"
        except ValueError:
            pass
        return None, f"{flag} {shown_text(text)}: {what}{hint}"
    value = int(cleaned)
    if value < low or value > high or (exclusive and value == high):
        return None, f"{flag} {value:,}: {what}"
    return value, None


def worker_problem(workers: int, force: bool) -> str | None:
    """Why ``--workers`` is refused, or None."""
    cpus = cpu_count()
    if force:
        if workers > MAX_FORCED_WORKERS:
            return (
                f"--workers {workers:,}: at most {MAX_FORCED_WORKERS} even with --force-workers"
            )
        return None
    if workers > cpus:
        return (
            f"--workers {workers:,}: this machine has {cpus} CPUs; give at most {cpus} "
            "(or add --force-workers)"
        )
    return None


def work_problems(designs, n_trials: int) -> list[str]:
    """Designs whose ``n_trials`` × ``max_patients`` exceeds :data:`MAX_PATIENT_TRIALS`."""
    out = []
    for design in designs:
        total = n_trials * design.max_patients
        if total > MAX_PATIENT_TRIALS:
            where = design.path or repr(design.name)
            most = MAX_PATIENT_TRIALS // design.max_patients
            out.append(
                f"--trials {n_trials:,}: with max_patients = {design.max_patients} ({where}) that "
                f"is {total:.3g} virtual patients, above the limit of {MAX_PATIENT_TRIALS:.0e}; "
                f"give at most {most:,} trials"
            )
    return out
