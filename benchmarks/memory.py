"""Resident memory of this process, from Linux's /proc (peak resettable since Linux 4.0)."""

from __future__ import annotations

from pathlib import Path

_SELF = Path("/proc/self")


def _status_mb(field: str) -> float:
    for line in (_SELF / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # reported in kB
    raise LookupError(field)


def resident_mb() -> float:
    """Resident set size now."""
    return _status_mb("VmRSS")


def reset_peak() -> None:
    """Forget the peak so far, so that ``peak_mb`` covers only what follows."""
    (_SELF / "clear_refs").write_text("5")


def peak_mb() -> float:
    """Peak resident set size since the process started or ``reset_peak``."""
    return _status_mb("VmHWM")
