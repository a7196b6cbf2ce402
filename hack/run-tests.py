#!/usr/bin/env python3
"""Run every test binary of the workspace, as `cargo test --workspace
--all-targets` does, but several binaries at a time.

Most integration tests wait on real components (an API server, a kubelet, a
registry's timeout) rather than compute, so on 2 cores two binaries at once
take half the wall time of one after the other (a fresh clone: 763 s
against 1,526 s). Each binary still runs
its own tests on its own threads and starts its own control plane, node and
operator, as under `cargo test`.

Builds once (`cargo test --no-run`), then runs each executable from its
package's directory with the environment cargo gives it, longest first (by
the durations of the last run, kept in target/test-durations.json, else of a
reference run, hack/test-durations.json), LANES at a time
(REGCRED_TEST_LANES, default 2). Prints each binary's output whole
when it ends, then a summary; exits non-zero if any binary failed. Extra
arguments go to every test binary (e.g. a name filter).
"""

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARGO = os.environ.get("CARGO", "cargo")
LANES = int(os.environ.get("REGCRED_TEST_LANES", "2"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
DURATIONS = TARGET / "test-durations.json"
SEED = ROOT / "hack" / "test-durations.json"


def package_name(package_id):
    """`regcred` of `path+file:///work/main#regcred@0.1.0` (or of
    `path+file:///x/regcred#0.1.0`, where the directory names the package)."""
    url, _, fragment = package_id.partition("#")
    if "@" in fragment:
        return fragment.split("@")[0]
    return url.rstrip("/").rsplit("/", 1)[-1]


def executables():
    """(name, path, package dir, package name) of every test executable, from cargo's build messages."""
    build = subprocess.run(
        [CARGO, "test", "--workspace", "--all-targets", "--no-run", "--message-format=json-render-diagnostics"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if build.returncode != 0:
        sys.exit(build.returncode)
    found = []
    for line in build.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") != "compiler-artifact" or not message.get("executable"):
            continue
        if not message["profile"]["test"]:
            continue
        target = message["target"]
        package = Path(message["manifest_path"]).parent
        crate = package_name(message["package_id"])
        name = f"{crate}::{'lib' if 'lib' in target['kind'] else target['name']}"
        found.append((name, message["executable"], package, crate))
    return found


def main():
    extra = sys.argv[1:]
    # This machine's last run, over the durations of a reference run (a
    # fresh clone's first run has only those).
    known = {}
    for path in (SEED, DURATIONS):
        try:
            known.update(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    # Longest first: the makespan is what a slow binary started last adds.
    binaries = sorted(executables(), key=lambda b: -known.get(b[0], 60.0))
    printing = threading.Lock()
    results = {}

    def run(binary):
        name, path, package, crate = binary
        env = dict(os.environ, CARGO_MANIFEST_DIR=str(package), CARGO_PKG_NAME=crate)
        started = time.monotonic()
        done = subprocess.run([path, *extra], cwd=package, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        took = time.monotonic() - started
        results[name] = (done.returncode, took)
        with printing:
            sys.stdout.write(f"\n===== {name} ({took:.1f} s, exit {done.returncode}) =====\n")
            sys.stdout.flush()
            sys.stdout.buffer.write(done.stdout)
            sys.stdout.flush()

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=LANES) as pool:
        list(pool.map(run, binaries))
    wall = time.monotonic() - started

    known.update({name: took for name, (_, took) in results.items()})
    DURATIONS.parent.mkdir(parents=True, exist_ok=True)
    DURATIONS.write_text(json.dumps(known, indent=1, sort_keys=True))
    failed = sorted(name for name, (code, _) in results.items() if code != 0)
    print(f"\n{len(results)} test binaries, {LANES} at a time, in {wall:.0f} s (their sum: {sum(t for _, t in results.values()):.0f} s)")
    for name, (code, took) in sorted(results.items(), key=lambda r: -r[1][1]):
        print(f"  {took:7.1f} s  {'ok    ' if code == 0 else 'FAILED'}  {name}")
    if failed:
        print(f"FAILED: {' '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
