"""``make bench``: owrt-vpn's benchmark suite (issue 8).

Runs the real CLI against the ImageBuilder double on a loopback mirror and
measures, side by side in one run:

1. our overhead per build: ``build`` wall time minus its ``make image``
   (warm cache, one router), and its ratio to the double's ``make image``;
2. the no-op rebuild (time, bytes downloaded, heavy imports) and ``--help``;
3. PKI + bundles for 1,000 users with ECDSA devices (and RSA-3072 devices,
   fewer users, scaled) against the guide's own recipe per user;
4. a 20-router fleet: ``build --jobs 2`` vs ``--jobs 1``;
5. strongSwan plugin packages per auth-method combination vs
   strongswan-full / strongswan-default.

Writes ``bench/results.json`` (figures + the machine they ran on) and prints
a short table. ``--quick`` shrinks every N (a smoke run, not figures to
commit); ``--profile DIR`` writes pyinstrument reports of the hot paths.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import REPO

SECTIONS = ("footprint", "overhead", "noop", "fleet", "pki")
NOTES = [
    "The real owrt-vpn CLI in subprocesses (bytecode cached, as after pip install) against "
    "the ImageBuilder double (tests/imagebuilder_double) on a signed loopback mirror.",
    "overhead = wall time of `owrt-vpn --json build --force` minus its `make image` "
    "(timings.make_image of --json, timed around the make process); warm: ImageBuilder and "
    "its confirmed `make manifest` cached; median of the runs.",
    "The workspace is on a RAM file system when there is one (machine.file_systems); the "
    "'on disk' figures repeat benchmarks 1 and 3 in the system temp dir.",
    "PKI + bundles = `owrt-vpn pki init` + `owrt-vpn bundle --password-file`, one device per "
    "user; the guide's recipe is bench/guide_recipe.sh (its client loop only, CA excluded), "
    "for fewer users; per-user ratios. RSA figures come from fewer users, scaled to 1,000.",
    "Plugin counts: strongswan-mod-* packages of owrt_vpn.render.packages.package_list (release "
    "24.10.2), the larger of the swanctl and ipsec.conf styles.",
]


def _sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"runs": 2, "fleet": 3, "ecdsa": 60, "rsa": 4, "guide_ecdsa": 6, "guide_rsa": 2}
    return {"runs": 5, "fleet": 20, "ecdsa": 1000, "rsa": 40, "guide_ecdsa": 100, "guide_rsa": 15}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", metavar="NAMES", help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--quick", action="store_true", help="small N everywhere (smoke run)")
    ap.add_argument(
        "--out",
        type=Path,
        help="results file [bench/results.json; with --quick: in the temp dir, so that a "
        "smoke run never replaces the committed figures]",
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        help="where the scratch workspace goes [/dev/shm if it is a RAM file system, else TMPDIR]",
    )
    ap.add_argument("--keep", action="store_true", help="keep the scratch workspace")
    ap.add_argument("--profile", type=Path, metavar="DIR", help="write pyinstrument reports")
    return ap


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every chosen benchmark; the results document."""
    import footprint as fp
    from machine import machine

    only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = only - set(SECTIONS)
    if unknown:
        raise SystemExit(f"bench: unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    n = _sizes(args.quick)
    t0 = time.monotonic()
    doc: dict[str, Any] = {
        "format": 1,
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick,
        "sizes": n,
        "notes": NOTES,
        "benchmarks": {},
    }
    b = doc["benchmarks"]
    if "footprint" in only:
        b["footprint"] = fp.footprint()
    if only == {"footprint"} and not args.profile:
        doc["machine"] = machine(Path(tempfile.gettempdir()))
    else:
        _with_lab(args, only, n, doc)
    doc["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["seconds"] = round(time.monotonic() - t0, 1)
    doc["summary"] = summary(b, quick=args.quick)
    return doc


def _with_lab(args: argparse.Namespace, only: set[str], n: dict[str, int], doc: Any) -> None:
    """The benchmarks that run the CLI against the loopback mirror."""
    import build_bench
    import footprint as fp
    import pki_bench
    from lab import lab
    from machine import machine

    b = doc["benchmarks"]
    with lab(args.workdir, args.keep) as lb:
        doc["machine"] = machine(lb.root, lb.disk)
        disk = lb.on_disk()
        if only & {"overhead", "noop"}:
            b["overhead"], site = build_bench.overhead(lb, n["runs"])
            info = json.loads((site / "dist/home/routers/gw/build-info.json").read_text())
            b["overhead"]["plugin_packages_in_image"] = fp.installed_plugins(info)
            if disk is not None and "overhead" in only:
                b["overhead_disk"], _ = build_bench.overhead(disk, max(2, n["runs"] - 2))
            if "noop" in only:
                b["noop"] = build_bench.noop(lb, site, n["runs"] + 2)
        if "fleet" in only:
            b["fleet"] = build_bench.fleet(lb, n["fleet"])
        if "pki" in only:
            b["pki"] = pki_bench.pki_bundles(
                lb, n["ecdsa"], n["rsa"], n["guide_ecdsa"], n["guide_rsa"]
            )
            if disk is not None:
                b["pki"]["ecdsa_disk"] = pki_bench.ours(
                    disk, "ecdsa-disk", n["ecdsa"], pki_bench.ECDSA_PLATFORMS
                )
        if args.profile:
            import hotspots

            doc["profiles"] = hotspots.write(lb, args.profile)


def _row(name: str, value: Any, unit: str, target: str = "", ok: bool | None = None) -> dict:
    return {"name": name, "value": value, "unit": unit, "target": target, "ok": ok}


def summary(b: dict[str, Any], quick: bool = False) -> list[dict[str, Any]]:
    """The short table: one row per headline figure.

    A ``quick`` run reports what it measured, for the N it ran, and judges no
    target that is stated for another N (scaling a small run up multiplies
    its fixed costs).
    """
    rows = []
    if "overhead" in b:
        w = b["overhead"]["warm"]
        c = b["overhead"]["warm_make_manifest_rerun"]
        rows += [
            _row("1 build overhead (wall - make image)", w["overhead"], "s", "<= 1.0 s",
                 w["overhead"] <= 1.0),
            _row("  overhead / double's make image", w["ratio_overhead_to_make_image"], "x"),
            _row("  double's make image", w["make_image"], "s"),
            _row("  overhead, make manifest re-run", c["overhead"], "s"),
        ]  # fmt: skip
    if "overhead_disk" in b:
        disk = b["overhead_disk"]["warm"]["overhead"]
        rows.append(_row("  overhead, workspace on disk", disk, "s"))
    if "noop" in b:
        x = b["noop"]
        rows += [
            _row("2 no-op rebuild", x["noop_wall"], "s", "<= 0.5 s", x["noop_wall"] <= 0.5),
            _row("  bytes downloaded", x["bytes_downloaded"], "B", "0", x["bytes_downloaded"] == 0),
            _row("  heavy imports", ",".join(x["imports"]["heavy_imported"]) or "none", "",
                 "none", not x["imports"]["heavy_imported"]),
            _row("  owrt-vpn --help", x["help_wall"], "s", "<= 0.3 s", x["help_wall"] <= 0.3),
        ]  # fmt: skip
    if "pki" in b:
        e, r = b["pki"]["ecdsa"], b["pki"]["rsa3072"]
        if quick:
            pki_rows = [
                _row(f"3 {e['users']} users ECDSA: pki + bundles (quick: not scaled)", e["wall"],
                     "s"),
                _row(f"  {r['users']} users RSA-3072: pki + bundles (quick: not scaled)",
                     r["wall"], "s"),
            ]  # fmt: skip
        else:
            thousand = e["wall"] if e["users"] == 1000 else e["scaled_to_1000_users_wall"]
            scaled = "" if e["users"] == 1000 else f" (scaled from {e['users']})"
            pki_rows = [
                _row(f"3 1000 users ECDSA: pki + bundles{scaled}", thousand, "s", "<= 15 s",
                     thousand <= 15),
                _row(f"  RSA-3072 devices, 1000 users (scaled from {r['users']})",
                     r["scaled_to_1000_users_wall"], "s"),
            ]  # fmt: skip
        rows += [
            *pki_rows,
            _row("  guide's recipe per user / ours", e["guide_per_user_over_ours"], "x"),
            *([_row("  the same, workspace on disk", b["pki"]["ecdsa_disk"]["wall"], "s")]
              if "ecdsa_disk" in b["pki"] else []),
            _row(f"  {e['users']}-user site: build overhead", e["firmware"]["overhead"], "s"),
            _row(f"  {e['users']}-user site: no-op build", e["firmware"]["noop_wall"], "s",
                 "<= 0.5 s", e["firmware"]["noop_wall"] <= 0.5),
            _row("  RSA-3072: guide per user / ours", r["guide_per_user_over_ours"], "x"),
        ]  # fmt: skip
    if "fleet" in b:
        f = b["fleet"]
        rows += [
            _row(f"4 fleet of {f['routers']}: --jobs 1", f["jobs1"]["wall"], "s"),
            _row(f"  fleet of {f['routers']}: --jobs 2", f["jobs2"]["wall"], "s"),
            _row("  speedup --jobs 2", f["speedup_jobs2"], "x"),
        ]
    if "footprint" in b:
        p = b["footprint"]
        n = p["certificate_plus_eap_mschapv2"]
        rows += [
            _row("5 plugin packages, cert + EAP-MSCHAPv2", n, "", "<= 20", n <= p["target"]),
            _row("  strongswan-full / -default", "79 / 29", ""),
            _row("  largest auth combination", p["largest_combination"], ""),
        ]
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The summary as aligned text."""
    lines = []
    for r in rows:
        mark = "" if r["ok"] is None else ("ok" if r["ok"] else "MISSED")
        value = f"{r['value']} {r['unit']}".strip()
        target = f"target {r['target']}" if r["target"] else ""
        lines.append(f"{r['name']:<52} {value:>14}  {target:<16} {mark}".rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run, write the results, print the table."""
    args = _parser().parse_args(argv)
    if args.out is None:
        quick = Path(tempfile.gettempdir()) / "owrt-vpn-bench-quick.json"
        args.out = quick if args.quick else REPO / "bench" / "results.json"
    doc = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    m = doc["machine"]
    print(
        f"owrt-vpn bench ({'quick' if args.quick else 'full'}, {doc['seconds']} s) on "
        f"{m['cpu']}, {m['usable_cores']} cores, {m['ram_gib']} GiB, Python {m['python']}, "
        f"{m['os']}"
    )
    print(table(doc["summary"]))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
