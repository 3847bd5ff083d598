"""Reading the project's YAML data files (value sets, rules, profiles, card texts, test cases).

libyaml's C loader when PyYAML was built with it: the pure-Python loader made start-up (and
every test that builds an app) several times slower. Both are safe loaders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """The document in a UTF-8 YAML file (raises OSError or yaml.YAMLError)."""
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_SafeLoader)
