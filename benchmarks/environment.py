"""What a benchmark ran on: the CPU's name and the versions of the packages it compared."""

import platform
from importlib.metadata import version
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name, e.g. 'AMD EPYC'."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions(*packages: str) -> dict[str, str | None]:
    """Installed version of each package, None where it is not installed (its rows are absent too)."""
    found: dict[str, str | None] = {}
    for package in packages:
        try:
            found[package] = version(package)
        except Exception:  # PackageNotFoundError, or metadata a package ships broken
            found[package] = None
    return found
