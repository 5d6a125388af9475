"""Test-suite set-up: make ``tests/support.py`` and ``tests/reference`` importable, and make
hypothesis deterministic (same examples every run, no example database) and free of wall-clock
deadlines (tests never assert times: a loaded CI machine must not fail a correct example)."""

import sys
from pathlib import Path

from hypothesis import settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile(
    "unstuck", derandomize=True, database=None, print_blob=True, deadline=None
)
settings.load_profile("unstuck")
