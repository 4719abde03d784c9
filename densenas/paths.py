"""Where shipped search spaces and LUTs live (the repository's configs/ and luts/)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("DENSENAS_HOME", Path(__file__).resolve().parent.parent))
CONFIGS_DIR = PROJECT_ROOT / "configs"
LUTS_DIR = PROJECT_ROOT / "luts"
