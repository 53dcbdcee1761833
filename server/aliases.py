"""Model aliases: the names clients send on their own (`claude-sonnet-4-5`, `gpt-5-codex`) mapped to a configured
model or `auto`, from the config's `aliases` (glob -> target, tried in order).

A configured model's own name and `auto` are never aliased; a name no glob matches is left as sent (and answered
with a 404 that lists the models). Knows nothing about HTTP or routing.
"""

from __future__ import annotations

import fnmatch
import re

from .config import RESERVED_MODEL_NAMES, TriageConfig


class ModelAliases:
    def __init__(self, config: TriageConfig) -> None:
        self._names = {m.name for m in config.models} | RESERVED_MODEL_NAMES
        # fnmatch.translate: '*' any run, '?' one character, '[...]' a set; matched case-sensitively
        self._rules = [(re.compile(fnmatch.translate(glob)), target) for glob, target in config.aliases.items()]

    def resolve(self, name: str) -> str:
        """The model name or 'auto' that `name` stands for."""
        if name in self._names:
            return name
        for pattern, target in self._rules:
            if pattern.match(name):
                return target
        return name
