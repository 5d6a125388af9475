"""Test-suite set-up: make ``tests/support.py`` and ``tests/reference`` importable."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
