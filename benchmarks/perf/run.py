"""Run the performance suite and write its tables into ``benchmarks/perf/README.md``.

    python -m benchmarks.perf.run                 # association + training (~10 min on 2 cores)
    python -m benchmarks.perf.run --e2e           # also the default compare end to end (+ several minutes)
    python -m benchmarks.perf.run -k association  # a subset (pytest -k expression)
    python -m benchmarks.perf.run --from-json F   # re-render tables from a saved pytest-benchmark JSON

Only the README sections with new results are replaced (each section says when and under what load
it was measured); the tables are also printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
SECTIONS = ("machine", "association", "training", "end_to_end")


def run_suite(json_path: Path, keyword: str | None, e2e: bool) -> int:
    """Run pytest on this folder. torch's OpenMP threads wait passively: with libgomp's default active
    spin, 2 threads on a 2-core machine that other processes also use are 10-50x slower (see README).
    """
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(HERE),
        "--benchmark-only",
        f"--benchmark-json={json_path}",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rs",
    ]
    if keyword:
        command += ["-k", keyword]
    if e2e:
        command.append("--perf-e2e")
    return subprocess.call(command, cwd=HERE.parent.parent, env=env)


def _si(x: float | None) -> str:
    if x is None:
        return "–"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g}{suffix}"
    return f"{x:.3g}"


def _stamp(data: dict) -> str:
    machine = data["machine_info"].get("multilivi", {})
    when = data["datetime"][:16].replace("T", " ")
    return f"_Measured {when} UTC, load average {machine.get('load_average', '?')}._"


def render_machine(data: dict) -> str:
    m = data["machine_info"].get("multilivi", {})
    rows = [
        ("CPU", f"{m.get('cpu')} ({m.get('cores')} cores)"),
        ("GPU", m.get("gpu")),
        ("Python / numpy / torch", f"{m.get('python')} / {m.get('numpy')} / {m.get('torch')}"),
        ("BLAS (threads)", m.get("blas")),
        ("torch CPU threads", m.get("torch_threads")),
        ("OMP_WAIT_POLICY", m.get("omp_wait_policy")),
        ("glimix-core", m.get("glimix-core")),
        ("git commit", (data.get("commit_info") or {}).get("id", "?")[:10]),
    ]
    return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), "", _stamp(data)])


def render_association(data: dict) -> str | None:
    infos = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "association"]
    if not infos:
        return None
    by_size: dict[tuple[int, int], dict[str, dict]] = {}
    for info in infos:
        by_size.setdefault((info["n_donors"], info["n_variants"]), {})[info["engine"]] = info
    lines = [
        "| donors | factors × variants | batched tests/s | glimix loop tests/s (extrapolated) | batched ÷ "
        "glimix "
        "| OLS tests/s | GEMM bound tests/s | batched ÷ GEMM | parity max rel. Δlog10 p (tests) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (n, m), engines in sorted(by_size.items()):
        rate = {
            e: engines[e]["tests_per_s"] if e in engines else None
            for e in ("batched", "glimix", "ols", "gemm")
        }

        def ratio(a: str, b: str, rate: dict[str, float | None] = rate) -> str:
            return f"{rate[a] / rate[b]:.3g}×" if rate[a] and rate[b] else "–"

        anyone = next(iter(engines.values()))
        parity = f"{anyone['parity_max_rel_dlog10p']:.1e} ({anyone['parity_tests']})"
        gpu = engines.get("gemm-cuda", {}).get("tests_per_s")
        gemm = _si(rate["gemm"]) + (f" (GPU {_si(gpu)})" if gpu else "")
        lines.append(
            f"| {n:,} | {anyone['n_factors']} × {m:,} | {_si(rate['batched'])} | {_si(rate['glimix'])} "
            f"| {ratio('batched', 'glimix')} | {_si(rate['ols'])} | {gemm} | {ratio('batched', 'gemm')} "
            f"| {parity} |"
        )
    glimix = [e["glimix"] for e in by_size.values() if "glimix" in e]
    notes = [
        f"{g['n_donors']:,} donors × {g['n_variants']:,} variants: measured on {g['measured_factors']} "
        "factors × "
        f"{g['measured_variants']:,} variants, fast scan {_si(g['measured_tests_per_s'])} tests/s, null fit "
        f"{g['fit_s_per_factor']:.2f} s per factor, economic_qs {g['qs_s']:.2f} s"
        for g in glimix
    ]
    if notes:
        lines += [
            "",
            "The glimix-core loop is extrapolated linearly (economic_qs once + null fit per factor + fast "
            "scan per test) from a subset; " + "; ".join(notes) + ".",
        ]
    return "\n".join([*lines, "", _stamp(data)])


def render_training(data: dict) -> str | None:
    infos = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "training"]
    if not infos:
        return None
    lines = [
        "| model | preset | device | train cells | parameters | s / epoch | cells/s | minibatch densify "
        "share |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for i in infos:
        lines.append(
            f"| {i['family']} | {i['preset']} (batch {i['batch_size']}, encoder {i['encoder_hidden']}) "
            f"| {i['device']} | {i['n_train_cells']:,} | {_si(i['n_parameters'])} "
            f"| {i['seconds_per_epoch']:.2f} | {_si(i['cells_per_s'])} | {i['batching_share']:.0%} |"
        )
    if not any(i["device"] == "cuda" for i in infos):
        lines += ["", "No CUDA device was visible: the `cuda` cases were skipped."]
    return "\n".join([*lines, "", _stamp(data)])


def render_end_to_end(data: dict) -> str | None:
    infos = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "end_to_end"]
    if not infos:
        return None
    i = infos[0]
    fits = ", ".join(f"{k} {v:.0f} s" for k, v in (i.get("fit_seconds") or {}).items() if v is not None)
    lines = [
        "| command | wall | CPU (user + sys) | peak RSS | model fits |",
        "|---|---:|---:|---:|---|",
        f"| `python {i['command']}` | {i['wall_s']:.0f} s | {i['cpu_s']:.0f} s | {i['peak_rss_mib']:.0f} MiB "
        f"| {fits} |",
    ]
    return "\n".join([*lines, "", _stamp(data)])


RENDER = {
    "machine": render_machine,
    "association": render_association,
    "training": render_training,
    "end_to_end": render_end_to_end,
}


def update_readme(sections: dict[str, str]) -> None:
    text = README.read_text()
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- perf:{name}:start -->\n).*?(\n<!-- perf:{name}:end -->)", re.DOTALL)
        if not pattern.search(text):
            raise ValueError(f"{README} has no perf:{name} markers; restore them from git")
        text = pattern.sub(lambda match, body=body: match.group(1) + body + match.group(2), text)
    README.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--e2e", action="store_true", help="also time the default compare end to end")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression selecting benchmarks")
    parser.add_argument("--json", type=Path, help="where to keep the pytest-benchmark JSON")
    parser.add_argument("--from-json", type=Path, help="render this JSON instead of running the suite")
    parser.add_argument("--no-readme", action="store_true", help="print the tables only")
    args = parser.parse_args(argv)
    if args.from_json:
        json_path = args.from_json
    else:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        json_path = args.json or Path(os.environ.get("TMPDIR", "/tmp")) / f"multilivi_perf_{stamp}.json"
        code = run_suite(json_path, args.keyword, args.e2e)
        if code not in (0, 5) or not json_path.exists():  # 5: nothing collected
            return code or 1
    data = json.loads(json_path.read_text())
    sections = {name: body for name in SECTIONS if (body := RENDER[name](data)) is not None}
    for name, body in sections.items():
        print(f"\n## {name}\n\n{body}")
    print(f"\nraw results: {json_path}")
    if not args.no_readme:
        update_readme(sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
