"""Tests of unstuck.integrations (a package: its test_lightning.py shares a basename with
tests/schedules/test_lightning.py)."""
