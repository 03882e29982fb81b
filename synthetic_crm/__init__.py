"""Synthetic input data for the partner-attribution platform.

``generate(out_dir, preset=..., months=..., seed=...)`` writes organizations,
partners, and per-day deals, touchpoints, exchange-rate and commission-plan files
in the platform's input format (CSV or JSON Lines).  See ``docs/synthetic-data.md``.
"""

from ._contract import BAD_KINDS, ENTITIES, FIELDS, REQUIRED
from ._generate import PRESETS, GenerationSummary, Preset, generate

__all__ = [
    "BAD_KINDS",
    "ENTITIES",
    "FIELDS",
    "PRESETS",
    "REQUIRED",
    "GenerationSummary",
    "Preset",
    "generate",
]
