"""Why trained weights cannot be used. Apart from the bundle (agents/ai_engine/bundle.py)
so that a shell running only rule models never imports torch (about 2 s of start-up)."""

from __future__ import annotations

from collections.abc import Sequence


class BundleError(Exception):
    """The weights cannot be used: missing, corrupt, or made for something else."""


class FeatureMismatch(BundleError):
    """The weights were trained on another feature list or feature formula version."""

    def __init__(
        self, expected: Sequence[str], found: Sequence[str], expected_v: int, found_v: int
    ) -> None:
        missing = [n for n in expected if n not in found]
        extra = [n for n in found if n not in expected]
        super().__init__(
            f"weights were trained on features v{found_v} {list(found)}, this engine computes "
            f"v{expected_v} {list(expected)} (missing {missing}, extra {extra}); "
            "retrain with `quantum train`"
        )
        self.expected = tuple(expected)
        self.found = tuple(found)


class EnsembleMismatch(BundleError):
    """The calibrator was fitted for another model list or weights than the configured one."""
