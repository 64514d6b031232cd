"""theradose: design and simulate phase 1 dose-escalation trials for radiopharmaceutical therapy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("theradose")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = ["__version__"]
