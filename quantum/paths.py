"""Where the project's data files are: beside the source tree, or installed with the wheel.

A checkout (and `pip install -e .`) reads `schemas/` and `data/` from the repository;
a plain `pip install .` (the Docker image) installs them under
`<prefix>/share/quantum-trader/`, declared in pyproject.toml.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]
_INSTALLED_ROOT = Path(sys.prefix) / "share" / "quantum-trader"


def data_path(*parts: str) -> Path:
    """The first of source tree / installed share dir that has `parts`."""
    source = _SOURCE_ROOT.joinpath(*parts)
    if source.exists():
        return source
    installed = _INSTALLED_ROOT.joinpath(*parts)
    return installed if installed.exists() else source
