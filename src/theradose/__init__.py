"""theradose: design and simulate phase 1 dose-escalation trials for radiopharmaceutical therapy."""

# The one place the version is written: pyproject.toml reads it from here (a constant, so that
# no command pays for importlib.metadata at start-up).
__version__ = "0.1.0"

__all__ = ["__version__"]
