#!/usr/bin/env python3
"""Reads the results of one scripts/xfstests run and prints report.md.

    report.py WORKDIR TARGET...

For every target: WORKDIR/TARGET/check.out (./check's output, read line by
line, so a run cut short still reports what it ran), run.txt (exit status
and seconds) and state/daemons.log (samples of the laminafs daemons). Prints
the summary line per target, then one row per test with pass / fail /
not run for each target and the not-run reason or the failure's first line.
"""

import json
import os
import re
import sys

STATUS_LINE = re.compile(r"^((?:generic|overlay|shared)/\d+)\s+(.*)$")


def parse_check_out(path):
    """Returns {test: (status, detail, seconds)} from ./check's output."""
    results = {}
    if not os.path.exists(path):
        return results
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            m = STATUS_LINE.match(line)
            if not m:
                continue
            test, rest = m.group(1), m.group(2)
            if "[not run]" in rest:
                results[test] = ("not run", rest.split("[not run]", 1)[1].strip(), None)
            elif "[expunged]" in rest:
                results[test] = ("not run", "expunged", None)
            elif ("output mismatch" in rest or "[failed" in rest or "_check_" in rest
                  or "[killed" in rest):
                results[test] = ("fail", rest.strip(), None)
            else:
                times = re.findall(r"(\d+)s\b", rest)
                if times:
                    results[test] = ("pass", "", int(times[-1]))
    return results


def read_run(path):
    info = {}
    if os.path.exists(path):
        with open(path) as f:
            for word in f.read().split():
                if "=" in word:
                    key, value = word.split("=", 1)
                    info[key] = value
    return info


def daemon_summary(path, test_mnt):
    """The test mount's daemon at its last sample, and the largest seen."""
    last = None
    peak_rss = peak_fds = 0
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            fields = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
            if not fields.get("rss_kb"):
                continue
            peak_rss = max(peak_rss, int(fields["hwm_kb"]))
            peak_fds = max(peak_fds, int(fields["fds"]))
            if fields.get("mnt") == test_mnt:
                last = fields
    return last, peak_rss, peak_fds


def test_dir(config_path, default):
    """TEST_DIR as local.config set it (the work directory may have moved)."""
    if os.path.exists(config_path):
        with open(config_path) as f:
            for line in f:
                m = re.match(r"^export TEST_DIR=(.*)$", line.strip())
                if m:
                    return m.group(1)
    return default


def stats_gauges(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data.get("gauges", {}) if isinstance(data, dict) else {}


def main():
    work, targets = sys.argv[1], sys.argv[2:]
    results = {t: parse_check_out(os.path.join(work, t, "check.out")) for t in targets}
    tests = sorted(set().union(*[set(r) for r in results.values()]),
                   key=lambda t: (t.split("/")[0], int(t.split("/")[1])))

    print("| target | summary | run time | daemon at the end (test mount) |")
    print("|---|---|---|---|")
    for t in targets:
        r = results[t]
        passed = sum(1 for s in r.values() if s[0] == "pass")
        failed = sum(1 for s in r.values() if s[0] == "fail")
        notrun = sum(1 for s in r.values() if s[0] == "not run")
        run = read_run(os.path.join(work, t, "run.txt"))
        secs = int(run.get("seconds", "0"))
        runtime = f"{secs // 3600} h {secs % 3600 // 60:02d} min" if run else "(running)"
        daemon = "-"
        if t.startswith("lamina"):
            summary = daemon_summary(os.path.join(work, t, "state", "daemons.log"),
                                     test_dir(os.path.join(work, t, "local.config"),
                                              os.path.join(work, t, "test")))
            if summary and summary[0]:
                last, peak_rss, peak_fds = summary
                daemon = (f"RSS {int(last['rss_kb']) // 1024} MiB (peak {int(last['hwm_kb']) // 1024}),"
                          f" {last['fds']} fds; largest of all daemons: peak RSS"
                          f" {peak_rss // 1024} MiB, {peak_fds} fds")
        print(f"| {t} | {passed} passed, {failed} failed, {notrun} not run | {runtime} | {daemon} |")
    print()
    print("| test | " + " | ".join(targets) + " | notes |")
    print("|---|" + "---|" * len(targets) + "---|")
    for test in tests:
        cells = []
        notes = []
        for t in targets:
            status, detail, _ = results[t].get(test, ("-", "", None))
            cells.append(status)
            if status != "pass" and detail and t.startswith("lamina"):
                note = f"{t}: {detail}"
                if note.split(": ", 1)[1] not in [n.split(": ", 1)[1] for n in notes]:
                    notes.append(note)
        print(f"| {test} | " + " | ".join(cells) + " | " +
              "; ".join(n.replace("|", "\\|") for n in notes) + " |")


if __name__ == "__main__":
    main()
