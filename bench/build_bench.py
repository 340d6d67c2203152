"""Benchmarks 1, 2 and 4: our overhead per build, the no-op rebuild, a 20-router fleet.

The ImageBuilder is the double: its ``make image`` really runs (shell, awk,
mksquashfs) and is timed by ``owrt-vpn build --json`` itself (``timings``);
the overhead is everything else the command's wall clock holds.
"""

from __future__ import annotations

import re
import shutil
from typing import Any

from lab import Lab, Timed, median, repeat, site_text

# A real ImageBuilder's `make image` on a PC (issue 8): the overhead in proportion.
REAL_MAKE_IMAGE = (30.0, 120.0)
HEAVY = ("cryptography", "jinja2", "requests", "rich", "zstandard", "docker")


def _router(run: Timed) -> dict[str, Any]:
    routers = run.json()["routers"]
    assert len(routers) == 1, routers
    return dict(routers[0])


def _split(run: Timed) -> dict[str, float]:
    r = _router(run)
    if r["status"] != "built":
        raise RuntimeError(f"expected a build, got {r['status']}: {r.get('error')}")
    make_image = float(r["timings"]["make_image"])
    return {
        "wall": run.wall,
        "cpu": run.cpu,
        "make_image": make_image,
        "make_manifest": float(r["timings"].get("make_manifest", 0.0)),
        "overhead": run.wall - make_image,
    }


def _summary(splits: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: median([s[k] for s in splits]) for k in splits[0]}
    out["ratio_overhead_to_make_image"] = round(out["overhead"] / out["make_image"], 3)
    out["runs"] = len(splits)
    out["overheads"] = [round(s["overhead"], 3) for s in splits]
    return out


def overhead(lb: Lab, runs: int) -> tuple[dict[str, Any], Any]:
    """Benchmark 1: ``build`` wall time minus its ``make image``, warm cache, one router."""
    site = lb.site("one")  # `owrt-vpn init`: router gw (bcm53xx phicomm_k3), alice, 2 devices
    lb.owrt("pki", "init", cwd=site)
    first = lb.build(site)  # cold: download, verify, extract, make manifest
    warm = [_split(lb.build(site, "--force")) for _ in range(runs)]
    cold = []
    for _ in range(runs):
        # As after a package-list change: `make manifest` runs again.
        shutil.rmtree(lb.root / "cache" / "manifests", ignore_errors=True)
        cold.append(_split(lb.build(site, "--force")))
    result = {
        "site": "1 router (bcm53xx phicomm_k3), 1 user, 2 devices (owrt-vpn init)",
        "first_build_cold_cache": {k: round(v, 3) for k, v in _split(first).items()},
        "warm": _summary(warm),
        "warm_make_manifest_rerun": _summary(cold),
    }
    o = result["warm"]["overhead"]
    result["overhead_share_of_real_make_image"] = {
        f"{int(s)}s": round(o / s, 4) for s in REAL_MAKE_IMAGE
    }
    return result, site


def _imports(stderr: str) -> dict[str, Any]:
    top: dict[str, int] = {}
    names = set()
    for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)$", stderr, re.M):
        cumulative, indent, name = int(m.group(1)), len(m.group(2)), m.group(3)
        names.add(name.split(".")[0])
        if indent == 1:
            top[name] = top.get(name, 0) + cumulative
    biggest = sorted(top.items(), key=lambda kv: -kv[1])[:6]
    return {
        "total_ms": round(sum(top.values()) / 1000, 1),
        "heavy_imported": sorted(names & set(HEAVY)),
        "largest_ms": {k: round(v / 1000, 1) for k, v in biggest},
    }


def noop(lb: Lab, site: Any, runs: int) -> dict[str, Any]:
    """Benchmark 2: the no-op rebuild (time, bytes downloaded, imports) and ``--help``."""
    lb.server.reset_log()
    noops = repeat(runs, lambda: lb.build(site))
    for run in noops:
        if _router(run)["status"] != "up-to-date":
            raise RuntimeError(f"the no-op build was not up to date: {run.stdout}")
    requests, sent = lb.mirror_bytes()
    traced = lb.owrt(
        "build", "--mirror", lb.mirror_url, cwd=site, python=["-X", "importtime"]
    )  # fmt: skip
    helps = repeat(runs, lambda: lb.owrt("--help", cwd=site))
    return {
        "noop_wall": median([r.wall for r in noops]),
        "noop_cpu": median([r.cpu for r in noops]),
        "noop_walls": [round(r.wall, 3) for r in noops],
        "mirror_requests": requests,
        "bytes_downloaded": sent,
        "imports": _imports(traced.stderr),
        "help_wall": median([r.wall for r in helps]),
        "help_walls": [round(r.wall, 3) for r in helps],
        "runs": runs,
    }


def fleet(lb: Lab, routers: int) -> dict[str, Any]:
    """Benchmark 4: ``build --jobs 2`` vs ``--jobs 1`` for ``routers`` routers of one target."""
    names = [f"gw{i:02d}" for i in range(1, routers + 1)]
    site = lb.site("fleet", site_text(names, [("alice", "pubkey", [("phone", "ios")])]))
    lb.owrt("pki", "init", cwd=site)  # the routers' server certificates, before timing
    lb.build(site, "--jobs", "2")  # warm: ImageBuilder and manifest cached
    out: dict[str, Any] = {"routers": routers, "target": "bcm53xx/generic phicomm_k3"}
    for jobs in (1, 2):
        run = lb.build(site, "--force", "--jobs", str(jobs))
        built = run.json()["routers"]
        if [r["status"] for r in built] != ["built"] * routers:
            raise RuntimeError(f"fleet build --jobs {jobs}: {run.stdout}")
        make = sum(float(r["timings"]["make_image"]) for r in built)
        out[f"jobs{jobs}"] = {
            "wall": round(run.wall, 3),
            "cpu": round(run.cpu, 3),
            "make_image_sum": round(make, 3),
            "per_router": round(run.wall / routers, 3),
        }
    out["speedup_jobs2"] = round(out["jobs1"]["wall"] / out["jobs2"]["wall"], 3)
    out["overhead_per_router_jobs1"] = round(
        (out["jobs1"]["wall"] - out["jobs1"]["make_image_sum"]) / routers, 3
    )
    return out
