"""Where the commands print tables: the terminal's width, or wide enough not to cut ids when piped."""

from __future__ import annotations

import sys

from rich.console import Console

PIPED_WIDTH = 200
"""Rich assumes 80 columns when the output is not a terminal, which cut rule ids in two."""


def output_console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)
