"""The TOML configuration file (`--config PATH`, default `./upcs.toml`).

Each layer owns its own section and its own frozen config; this module only finds and parses the
file and hands out sections, so a bad file is reported once, with its path, before anything runs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blocklist import DialPlan, DialPlanError

__all__ = ["DEFAULT_CONFIG_PATH", "ConfigError", "UpcsConfig", "load_config"]

DEFAULT_CONFIG_PATH = Path("upcs.toml")
KNOWN_SECTIONS = frozenset({"dialplan", "gateway", "sync", "hub"})


class ConfigError(ValueError):
    """The configuration file cannot be used; the message names the file and the fault."""


@dataclass(frozen=True)
class UpcsConfig:
    """The parsed file: the dial plan, and the raw tables each layer turns into its own config."""

    path: Path | None
    dialplan: DialPlan = field(default_factory=DialPlan)
    sections: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> Mapping[str, Any]:
        return self.sections.get(name, {})


def load_config(path: Path | None = None) -> UpcsConfig:
    """Load `path`, or `./upcs.toml` when it exists, or the embedded defaults.

    An explicitly named file that does not exist is an error; the default one is optional.
    """
    explicit = path is not None
    target = path if path is not None else DEFAULT_CONFIG_PATH
    if not target.exists():
        if explicit:
            raise ConfigError(f"{target}: no such configuration file")
        return UpcsConfig(path=None)
    try:
        data = tomllib.loads(target.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{target}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{target}: cannot read: {exc}") from None
    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        raise ConfigError(f"{target}: unknown section(s) {', '.join(unknown)}")
    sections: dict[str, Mapping[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{target}: [{name}] must be a table")
        sections[name] = table
    try:
        plan = DialPlan.from_section(sections.get("dialplan", {}))
    except DialPlanError as exc:
        raise ConfigError(f"{target}: {exc}") from None
    return UpcsConfig(path=target, dialplan=plan, sections=sections)
