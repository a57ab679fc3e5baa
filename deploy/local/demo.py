"""`make demo`: a global control plane, driven with the real CLI.

Starts ``gossamer global run`` on its embedded SQLite store in ``.demo/``, points a
demo-only CLI configuration at it, applies ``samples/policies.yaml``, lists what the
global holds, and stops it again (``--keep`` leaves it running and says how to use it).
The multi-zone demo builds on this once zones and proxies exist.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / ".demo"
SAMPLES = Path(__file__).parent / "samples"
API = "127.0.0.1:15681"


def gossamer(*args: str, env: dict[str, str]) -> None:
    print(f"\n$ gossamer {' '.join(args)}", flush=True)
    subprocess.run([str(Path(sys.executable).parent / "gossamer"), *args], env=env, check=True)


def wait_ready(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the global CP exited with {proc.returncode}; "
                             f"see {DEMO_DIR}/global.log")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the global CP did not become ready in time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the control plane running")
    args = parser.parse_args()

    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    DEMO_DIR.mkdir()
    env = {**os.environ, "GOSSAMER_CONFIG": str(DEMO_DIR / "cli-config.yaml")}
    log = open(DEMO_DIR / "global.log", "wb")  # noqa: SIM115 - handed to the child
    print(f"starting the global control plane (API on {API}, data in {DEMO_DIR}/global)")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gossamer"), "global", "run",
         "--data-dir", str(DEMO_DIR / "global"), "--api-addr", API],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_ready(f"http://{API}", proc, time.monotonic() + 30)
        gossamer("config", "control-planes", "add", "--name", "demo", "--address",
                 f"http://{API}", "--token-file", str(DEMO_DIR / "global" / "admin-token"),
                 env=env)
        gossamer("get", "meshes", env=env)
        gossamer("apply", "-f", str(SAMPLES / "policies.yaml"), env=env)
        gossamer("get", "meshtimeouts", "-m", "default", env=env)
        gossamer("get", "meshtrafficpermissions", "-m", "default", env=env)
        gossamer("get", "meshretry", "backend-retries", "-m", "default", "-o", "yaml", env=env)
    except BaseException:
        proc.terminate()
        raise
    if args.keep:
        print(f"\nThe global CP keeps running (pid {proc.pid}). Use it with:\n"
              f"  export GOSSAMER_CONFIG={DEMO_DIR}/cli-config.yaml\n"
              f"  {Path(sys.executable).parent}/gossamer get meshes\n"
              f"Stop it with: kill {proc.pid}")
        return
    proc.terminate()
    proc.wait(timeout=15)
    print("\ndemo done; the global CP is stopped (run with KEEP=1 to leave it running)")


if __name__ == "__main__":
    main()
