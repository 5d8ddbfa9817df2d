#!/usr/bin/env python3
"""Turns scripts/bench's raw measurements into a table and JSON.

raw.tsv lines: session, metric, system, rep, value, unit ("fail" values mark
failed steps). Times are shown as medians with min-max over repetitions; for
other systems as ratios to kernel overlayfs' median (kernel = 1.00), so lower
is better everywhere.
"""
import argparse
import json
import statistics
import sys
from collections import defaultdict

# Targets from issue 6 for Lamina, as a ratio to kernel overlayfs.
DATA, COPYUP, META_COLD, META_WARM, RMRF = 1.10, 1.00, 1.50, 1.20, 1.20
TARGETS = {
    "read/seqread_cold": DATA, "read/seqread_warm": DATA,
    "read/randread_1job_us": DATA, "read/randread_4job_us": DATA,
    "write/seqwrite_fsync": DATA,
    "copyup_big/append_1byte": COPYUP, "copyup_sparse/append_1byte": COPYUP,
    "smallfiles/create": META_COLD, "smallfiles/stat": META_WARM,
    "smallfiles/statcold": META_COLD, "smallfiles/readdir": META_COLD,
    "smallfiles/unlink": META_COLD,
    "walk/find_cold": META_COLD, "walk/find_warm": META_WARM,
    "walk/du_cold": META_COLD, "walk/du_warm": META_WARM,
    "walk/lsR_cold": META_COLD, "walk/lsR_warm": META_WARM,
    "walk/tar_cold": META_COLD, "walk/tar_warm": META_WARM,
    "untar/untar": META_COLD, "rmrf/rm_rf_lower_tree": RMRF,
    "statstorm/storm": META_WARM,
    "meta_par1/par": META_COLD, "meta_par2/par": META_COLD, "meta_par4/par": META_COLD,
}
METADATA = {k for k, v in TARGETS.items() if v in (META_COLD, META_WARM, RMRF)}
SHORT = {"kernel": "kernel", "fuse-overlayfs": "fuse-ovl", "lamina": "lamina",
         "lamina-uring": "lamina-uring"}


def fmt_abs(v, unit):
    if unit == "s":
        return f"{v:.3f} s" if v < 10 else f"{v:.1f} s"
    if unit == "us":
        return f"{v:.2f} µs"
    if unit == "bytes":
        return human(v)
    return f"{v:g}"


def human(b):
    for u in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024 or u == "GiB":
            return f"{b:.0f} {u}" if u == "B" else f"{b:.1f} {u}"
        b /= 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--meta", action="append", default=[])
    a = ap.parse_args()
    meta = dict(m.split("=", 1) for m in a.meta)

    vals = defaultdict(lambda: defaultdict(list))  # key -> system -> [values]
    units, order, failures = {}, [], []
    with open(a.raw) as f:
        for line in f:
            session, metric, system, rep, value, unit = line.rstrip("\n").split("\t")
            key = f"{session}/{metric}"
            if value == "fail":
                failures.append({"workload": key, "system": system, "rep": int(rep)})
                continue
            if key not in units:
                order.append(key)
            units[key] = unit
            vals[key][system].append(float(value))
    systems = meta.get("systems", "kernel,fuse-overlayfs,lamina").split(",")
    base = "kernel" if "kernel" in systems else None

    results = {}
    for key in order:
        results[key] = {"unit": units[key], "systems": {}}
        for s in systems:
            v = vals[key].get(s)
            if v:
                results[key]["systems"][s] = {
                    "median": statistics.median(v), "min": min(v), "max": max(v), "values": v}

    out = []
    p = out.append

    def metric_table(first, suffix, columns, fmt, missing):
        # One row per workload that recorded the metric `suffix`, one column
        # per system.
        p(f"| {first} | " + " | ".join(SHORT[s] for s in columns) + " |")
        p("|---|" + "---|" * len(columns))
        for key in order:
            if key.endswith(suffix):
                r = results[key]["systems"]
                p(f"| {key.split('/')[0]} | " + " | ".join(
                    fmt(r[s]["median"]) if s in r else missing for s in columns) + " |")
    p(f"Lamina bench, {meta.get('mode')} run, {meta.get('reps')} repetitions, commit "
      f"{meta.get('commit')}, kernel {meta.get('kernel')}, {meta.get('nproc')} vCPUs, "
      f"{meta.get('mem')}, backing fs {meta.get('backing_fs')}, Lamina FUSE passthrough "
      f"{meta.get('lamina_passthrough')}, {meta.get('elapsed_s')} s")
    p(f"Load average (1/5/15 min) at the start of each repetition and at the end: "
      f"{meta.get('load_per_rep', '').replace('|', ' ; ')}")
    p(f"Sizes: {meta.get('sizes')}; walked tree: {meta.get('objects')} objects")
    p("")
    others = [s for s in systems if s != base]
    head = ["workload"]
    if base:
        head.append("kernel (abs)")
        head += [f"{SHORT[s]} ×kernel" for s in others]
        if "lamina" in others:
            head.append("lamina target")
        if "lamina" in others and "fuse-overlayfs" in others:
            head.append("lamina speed-up vs fuse-ovl")
    else:
        head += [SHORT[s] for s in systems]
    p("| " + " | ".join(head) + " |")
    p("|" + "---|" * len(head))
    for key in order:
        unit = units[key]
        if unit not in ("s", "us") or key.split("/")[1].startswith("daemon_"):
            continue
        r = results[key]["systems"]
        row = [key]
        if base:
            k = r.get(base)
            if not k:
                continue
            row.append(f"{fmt_abs(k['median'], unit)} ({fmt_abs(k['min'], unit)}–{fmt_abs(k['max'], unit)})")
            for s in others:
                if s in r:
                    m = k["median"]
                    row.append(f"{r[s]['median']/m:.2f} ({r[s]['min']/m:.2f}–{r[s]['max']/m:.2f})")
                else:
                    row.append("failed")
            if "lamina" in others:
                t = TARGETS.get(key)
                ok = ""
                if t and "lamina" in r:
                    ok = " ✓" if r["lamina"]["median"] / k["median"] <= t else " ✗"
                row.append(f"≤ {t:.2f}{ok}" if t else "")
            if "lamina" in others and "fuse-overlayfs" in others:
                if "lamina" in r and "fuse-overlayfs" in r:
                    row.append(f"{r['fuse-overlayfs']['median']/r['lamina']['median']:.2f}×")
                else:
                    row.append("")
        else:
            for s in systems:
                row.append(fmt_abs(r[s]["median"], unit) if s in r else "failed")
        p("| " + " | ".join(row) + " |")

    p("")
    p("Allocated bytes of the copied-up file in the upper (median):")
    p("")
    metric_table("workload", "/upper_alloc_bytes", systems, human, "failed")

    daemons = [s for s in systems if s != "kernel"]
    if daemons:
        p("")
        p("FUSE daemon, tree-walk session (one mount: find, du, ls -lR, tar, each cold and warm), "
          "median:")
        p("")
        p("| system | daemon CPU (utime+stime) | peak RSS (VmHWM) | RSS growth in cold find | bytes per walked object |")
        p("|---|---|---|---|---|")
        for s in daemons:
            def g(metric, f):
                v = results.get(f"walk/{metric}", {}).get("systems", {}).get(s)
                return f(v["median"]) if v else "n/a"
            p(f"| {SHORT[s]} | {g('daemon_cpu_s', lambda x: f'{x:.2f} s')} | "
              f"{g('daemon_hwm_bytes', human)} | {g('rss_growth_find_cold', human)} | "
              f"{g('bytes_per_object', lambda x: f'{x:.0f}')} |")
        p("")
        p("Daemon CPU seconds per session (median), for reference:")
        p("")
        metric_table("session", "/daemon_cpu_s", daemons, lambda x: f"{x:.2f}", "n/a")
    if failures:
        p("")
        p(f"FAILED steps ({len(failures)}): " + ", ".join(
            f"{f['system']} {f['workload']} rep {f['rep']}" for f in failures))

    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(a.text, "w") as f:
        f.write(text)
    with open(a.json, "w") as f:
        json.dump({"meta": meta, "results": results, "failures": failures,
                   "targets": TARGETS}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
