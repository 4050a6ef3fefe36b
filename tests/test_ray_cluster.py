"""``nrflab reproduce --backend ray`` on a real multi-node Ray cluster started on this machine: a head (no
CPUs for tasks) and two worker nodes, each from its own ``ray start`` with its own ports; the driver
connects with ``--ray-address``. The same recipe locally and on the cluster gives the same report, and
the same verdicts when one worker node is killed (kill -9 of its raylet and workers) in the middle of a run:
Ray runs the lost task again on the other node, which resumes the half-written run from its checkpoint.

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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from nrflab.cli import main
from nrflab.core.io import read_metadata

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


@dataclass(frozen=True)
class Cluster:
    """The head's address and each worker node's node-manager port (what finds its raylet)."""

    address: str
    worker_ports: tuple[int, ...]


@pytest.fixture(scope="module")
def ray_cluster():
    """A head and two one-CPU worker nodes; yields a :class:`Cluster`; stops exactly these processes."""
    temp = tempfile.mkdtemp(prefix="nrfray", dir="/tmp")  # Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray = str(Path(sys.executable).with_name("ray"))
    head_port, *ports = _free_ports(1 + 3 * len(PORT_FLAGS))
    taken = {head_port, *ports}

    def worker_range() -> int:
        """The first port of a 41-port worker range that holds no port given to any component (Ray refuses
        a range that overlaps one) and no earlier range; the OS hands out free ports in no order."""
        for low in _free_ports(64):
            if low + 40 < 65536 and not any(low <= p <= low + 40 for p in taken):
                taken.update(range(low, low + 41))
                return low
        raise AssertionError("no free 41-port range for Ray's workers")

    def node_flags() -> list[str]:
        flags = [f"{flag}={ports.pop()}" for flag in PORT_FLAGS]
        low = worker_range()
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
        ports_of = [int(next(f for f in c if f.startswith("--node-manager-port=")).split("=")[1]) for c in commands]
        yield Cluster(f"127.0.0.1:{head_port}", tuple(ports_of[1:]))
    finally:
        _stop(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _numbers(out: Path) -> tuple[list[dict], str]:
    verdicts = json.loads((out / "verdicts.json").read_text())
    md = (out / "report.md").read_text().split("## The chain")[0]
    return verdicts, re.sub(re.escape(str(out)), "OUT", md)


FLAGS = [
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
    "core.twins.epochs=6",  # runs long enough to be caught between their first checkpoint and their end
    "--set",
    'core.final_attacks=["pgd-l2:eps=0.5,step=0.25,steps=2"]',
    "--set",
    "features.build.limit=64",
]


@pytest.fixture(scope="module")
def local_chain(tmp_path_factory) -> Path:
    """The chain run with local processes: the reference every cluster run is compared with."""
    local = tmp_path_factory.mktemp("chain") / "local"
    assert main(["reproduce", *FLAGS, "--workers", "2", "--out", str(local)]) == 0  # 1 torch thread per run
    return local


def _on_cluster(cluster: Cluster, out: Path) -> int:
    return main(
        ["reproduce", *FLAGS, "--backend", "ray", "--ray-address", cluster.address, "--cpus-per-run", "1"]
        + ["--out", str(out)]
    )


def test_the_same_recipe_gives_the_same_report_locally_and_on_a_ray_cluster(
    ray_cluster, local_chain, tmp_path, monkeypatch
):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    cluster = tmp_path / "cluster"
    assert _on_cluster(ray_cluster, cluster) == 0
    manifest = json.loads((cluster / "reproduce.json").read_text())
    assert manifest["backend"] == "ray" and {t["status"] for t in manifest["tasks"]} == {"finished"}
    assert all("ray node " in t["where"] for t in manifest["tasks"]), manifest["tasks"]
    nodes = {t["where"].split("ray node ")[-1] for t in manifest["tasks"]}
    assert len(nodes) == 2, nodes  # both worker nodes trained runs (the head has no CPU for tasks)
    assert _numbers(cluster)[0] == _numbers(local_chain)[0]
    assert _numbers(cluster)[1].replace("cluster", "local") == _numbers(local_chain)[1]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _held_run(pid: int, out: Path) -> Path | None:
    """The run directory under ``out`` whose lock the process ``pid`` holds open (it is writing that run)."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None
    held = [Path(link).parent for link in links if link.endswith(".nrflab.lock") and link.startswith(str(out))]
    return held[0] if held else None


def _half_written(run: Path) -> bool:
    """Whether ``run`` has committed an epoch but not its last one."""
    checkpoint = run / "checkpoint.safetensors"
    try:
        return checkpoint.is_file() and read_metadata(checkpoint).get("finished") == "0"
    except Exception:  # replaced while read: look again
        return False


def _kill_node_mid_run(port: int, out: Path, stop: threading.Event, killed: list[Path]) -> None:
    """kill -9 the worker node whose raylet listens on ``port`` (raylet, its workers and agents) as soon as one
    of its tasks is writing a half-written run (one that has committed an epoch, not its last)."""
    while not stop.is_set():
        tree = _process_tree(f"node_manager_port={port}")
        for pid in tree:
            run = _held_run(pid, out) if "ray::" in _cmdline(pid) else None
            if run is not None and _half_written(run):
                for victim in tree:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed.append(run)
                return
        time.sleep(0.05)


def test_a_lost_node_does_not_lose_the_chain(ray_cluster, local_chain, tmp_path, monkeypatch):
    """Runs last (it kills a node of the module's cluster): one worker node dies in the middle of a run; the
    chain finishes on the other node with the verdicts of the undisturbed local chain."""
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    out = tmp_path / "lost-node"
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_node_mid_run, args=(ray_cluster.worker_ports[1], out, stop, killed))
    killer.start()
    try:
        code = _on_cluster(ray_cluster, out)
    finally:
        stop.set()
        killer.join()
    assert killed, "no task of the second node was caught writing a half-written run"
    assert code == 0
    manifest = json.loads((out / "reproduce.json").read_text())
    assert {t["status"] for t in manifest["tasks"]} == {"finished"}, manifest["tasks"]
    assert read_metadata(killed[0] / "checkpoint.safetensors")["finished"] == "1"  # resumed and finished elsewhere
    assert not list(out.rglob(".nrflab.lock")), "a finished chain leaves no lock file"
    assert _numbers(out)[0] == _numbers(local_chain)[0]
