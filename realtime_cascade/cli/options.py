"""Options several subcommands share, worded once."""

from __future__ import annotations

from ..config import PACKAGED

CONFIG_HELP = (
    "a TOML config file, or the name of a packaged one "
    f"({', '.join(sorted(PACKAGED))}); default: the embedded sim tiers"
)
