"""What a benchmark ran on (the CPU's name, the versions it compared) and where its result is written."""

import json
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


def write_result(name: str, result: dict[str, object]) -> Path:
    """Write `result` to benchmarks/results/NAME.json and say so; the file's path."""
    out = Path(__file__).parent / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return out
