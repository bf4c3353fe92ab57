"""Shared helpers and fixtures' building blocks for the tests (not test modules)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root
