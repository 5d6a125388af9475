"""Test-suite set-up: make ``tests/support.py`` and ``tests/reference`` importable, and make
hypothesis deterministic (same examples every run, no example database)."""

import sys
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("unstuck", derandomize=True, database=None, print_blob=True)
settings.load_profile("unstuck")
