"""What the figures were measured on: CPU, cores, RAM, Python, OS, disk, load."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from lab import REPO


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    except OSError:
        pass
    return "unknown"


def _mount(path: Path) -> str:
    """File system type and options of the mount holding ``path`` (e.g. ext4 discard)."""
    best, found = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return found
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) >= 4 and target.startswith(fields[1]) and len(fields[1]) > len(best):
            best, found = fields[1], f"{fields[2]} ({fields[3]}) on {fields[1]}"
    return found


def _commit() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "unknown"


def fs_probe(path: Path, files: int = 2000) -> dict[str, float]:
    """Seconds to create (4 KiB each, in 100 dirs) and delete ``files`` files under ``path``."""
    import shutil
    import tempfile
    import time

    root = Path(tempfile.mkdtemp(prefix="fsprobe-", dir=path))
    try:
        t0 = time.perf_counter()
        for i in range(files):
            d = root / str(i % 100)
            if i < 100:
                d.mkdir()
            (d / str(i)).write_bytes(b"x" * 4096)
        created = time.perf_counter() - t0
        t0 = time.perf_counter()
        shutil.rmtree(root)
        return {"create_s": round(created, 3), "delete_s": round(time.perf_counter() - t0, 3)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def machine(workdir: Path, disk: Path | None = None) -> dict[str, Any]:
    """The machine and its state at the start of the run; ``workdir`` holds the
    workspace, ``disk`` the on-disk variant (both probed for file create/delete speed)."""
    mem_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    fs = {"workspace": {"mount": _mount(workdir), "2000_files": fs_probe(workdir)}}
    if disk is not None:
        fs["disk"] = {"mount": _mount(disk), "2000_files": fs_probe(disk)}
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(int(mem_kb) / 1024 / 1024, 1) if mem_kb.isdigit() else None,
        "python": platform.python_version(),
        "os": _first("/etc/os-release", "PRETTY_NAME").strip('"'),
        "kernel": platform.release(),
        "file_systems": fs,
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "commit": _commit(),
    }
