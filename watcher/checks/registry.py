"""Check kinds by name. `ModelChecker.run` looks every kind up here: a new kind is a class
that satisfies `Check` (protocol.py) plus one `register_check` (or one entry below)."""

from __future__ import annotations

from watcher.checks.bias_check import BiasCheck
from watcher.checks.drift_check import DriftCheck
from watcher.checks.error_check import ErrorCheck
from watcher.checks.protocol import Check

CHECKS: dict[str, Check] = {
    str(check.kind): check for check in (DriftCheck(), ErrorCheck(), BiasCheck())
}


def register_check(check: Check) -> Check:
    """Add a check kind; a kind is registered once (a second one would silently replace it)."""
    if check.kind in CHECKS:
        raise ValueError(f"a check of kind {check.kind!r} is already registered")
    CHECKS[str(check.kind)] = check
    return check


def unregister_check(kind: str) -> None:
    CHECKS.pop(kind, None)


def check_for(kind: str) -> Check:
    """The registered check of `kind`; KeyError naming the registered kinds otherwise."""
    try:
        return CHECKS[kind]
    except KeyError:
        raise KeyError(f"no check of kind {kind!r}; registered: {sorted(CHECKS)}") from None
