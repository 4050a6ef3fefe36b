"""``nrflab reproduce --backend ray`` on a real multi-node Ray cluster started on this machine: a head (no
CPUs for tasks) and two worker nodes, each from its own ``ray start`` with its own ports; the driver
connects with ``--ray-address``. The same recipe locally and on the cluster gives the same report.

The command the test runs, by hand (three shells, or with ``--block`` left out as here)::

    export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
    ray start --head --port 6391 --num-cpus 0 --include-dashboard false --temp-dir /tmp/nrfray
    ray start --address 127.0.0.1:6391 --num-cpus 1 --node-manager-port 6411 --object-manager-port 6412 \\
        --min-worker-port 11100 --max-worker-port 11199 ...      # a second worker with other ports
    nrflab reproduce --scale quick --only core,features --backend ray --ray-address 127.0.0.1:6391 --out OUT
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from nrflab.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install ray)"),
]

PORT_FLAGS = (
    "--node-manager-port",
    "--object-manager-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--dashboard-agent-listen-port",
)


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _process_tree(marker: str) -> set[int]:
    """Processes whose command line holds ``marker`` (the cluster's temp dir), and their descendants."""
    procs: dict[int, tuple[int, str]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        procs[int(pid)] = (ppid, cmd)
    me, mine = os.getpid(), set()
    while me > 1 and me in procs:
        mine.add(me)
        me = procs[me][0]
    found = {p for p, (_, cmd) in procs.items() if marker in cmd and p not in mine}
    frontier = set(found)
    while frontier:
        frontier = {p for p, (pp, _) in procs.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def _stop(marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _process_tree(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and two one-CPU worker nodes; yields the head's address; stops exactly these processes."""
    temp = tempfile.mkdtemp(prefix="nrfray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).with_name("ray"))
    head_port, *ports = _free_ports(1 + 3 * (len(PORT_FLAGS) + 2))

    def node_flags() -> list[str]:
        flags = [f"{flag}={ports.pop()}" for flag in PORT_FLAGS]
        low = ports.pop()
        return [*flags, f"--min-worker-port={low}", f"--max-worker-port={low + 40}"]

    commands = [
        [
            ray,
            "start",
            "--head",
            f"--port={head_port}",
            "--num-cpus=0",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp}",
            *node_flags(),
        ]
    ]
    for i in range(2):
        commands.append(
            [
                ray,
                "start",
                f"--address=127.0.0.1:{head_port}",
                "--num-cpus=1",
                f'--resources={{"worker{i}": 1}}',
                "--disable-usage-stats",
                *node_flags(),
            ]
        )
    try:
        for cmd in commands:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        yield f"127.0.0.1:{head_port}"
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _numbers(out: Path) -> tuple[list[dict], str]:
    verdicts = json.loads((out / "verdicts.json").read_text())
    md = (out / "report.md").read_text().split("## The chain")[0]
    return verdicts, re.sub(re.escape(str(out)), "OUT", md)


def test_the_same_recipe_gives_the_same_report_locally_and_on_a_ray_cluster(ray_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    flags = [
        "--scale",
        "quick",
        "--only",
        "core,features",
        "--dataset",
        "digits",
        "--quiet",
        "--set",
        "core.twins.eval_size=64",
        "--set",
        'core.final_attacks=["pgd-l2:eps=0.5,step=0.25,steps=2"]',
        "--set",
        "features.build.limit=64",
    ]
    local, cluster = tmp_path / "local", tmp_path / "cluster"
    assert main(["reproduce", *flags, "--workers", "2", "--out", str(local)]) == 0  # 1 torch thread per run
    assert (
        main(
            [
                "reproduce",
                *flags,
                "--backend",
                "ray",
                "--ray-address",
                ray_cluster,
                "--cpus-per-run",
                "1",
                "--out",
                str(cluster),
            ]
        )
        == 0
    )
    manifest = json.loads((cluster / "reproduce.json").read_text())
    assert manifest["backend"] == "ray" and {t["status"] for t in manifest["tasks"]} == {"finished"}
    assert all("ray node " in t["where"] for t in manifest["tasks"]), manifest["tasks"]
    nodes = {t["where"].split("ray node ")[-1] for t in manifest["tasks"]}
    assert len(nodes) == 2, nodes  # both worker nodes trained runs (the head has no CPU for tasks)
    assert _numbers(cluster)[0] == _numbers(local)[0]
    assert _numbers(cluster)[1].replace("cluster", "local") == _numbers(local)[1]
