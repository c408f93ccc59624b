"""Quantum Trader: a crypto-futures trading platform built as Kafka stream processors."""

__version__ = "0.1.0"

import contextlib
import warnings

# confluent-kafka's schema-registry client imports authlib's httpx integration, which warns
# on every start about a rename that is not ours to make. authlib forces its own warnings
# to "always" when its deprecate module loads, so load it first and filter after.
with contextlib.suppress(ImportError):
    import authlib.deprecate  # noqa: F401
warnings.filterwarnings("ignore", message="The httpx module is deprecated")
