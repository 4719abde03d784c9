"""Where the shipped search spaces, recipes and LUTs live: package data of
``densenas.configs`` and ``densenas.luts`` (the repository's configs/ and luts/), found
the same way from a wheel, a plain install and an editable one."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# pip installs packages as directories, so the resources are real paths.
CONFIGS_DIR = Path(str(files("densenas.configs")))
LUTS_DIR = Path(str(files("densenas.luts")))
