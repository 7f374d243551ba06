"""Run a Flower app in a real local deployment: a SuperLink, N SuperNodes, ``flwr run``.

    python examples/flower_secagg/local_deployment.py [--nodes 3] [--rounds 3]
        [--app examples/flower_secagg] [--run-config "stage-timeout-s=30"]

starts, on 127.0.0.1 and on free ports, ``flower-superlink --insecure`` and ``--nodes`` x
``flower-supernode --insecure --superlink 127.0.0.1:<port> --port <port> --node-config
"partition-id=<i> num-partitions=<N>"`` (each in its own process group), writes a Flower
config file naming that SuperLink into a fresh ``FLWR_HOME`` (your ``~/.flwr`` is not
touched), runs ``flwr run <app> local-deployment --stream``, and stops every process it
started, whatever happens. These are the commands README.md gives for doing it by hand.

The tests and ``benchmarks/secagg/deployment`` use :class:`LocalDeployment` directly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
CONNECTION = "local-deployment"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    """A Flower command from the running interpreter's environment, else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


class LocalDeployment:
    """A SuperLink and ``nodes`` SuperNodes on loopback, stopped on exit.

    Parameters
    ----------
    nodes
        SuperNodes to start; node ``i`` gets ``--node-config "partition-id=i
        num-partitions=<nodes>"`` plus ``node_config[i]`` if given.
    workdir
        Where logs and ``FLWR_HOME`` go (a temporary folder, removed on exit, if ``None``).
    env
        Extra environment variables for every process (e.g. ``PYTHONPATH``).
    """

    def __init__(
        self,
        nodes: int,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        node_config: Mapping[int, str] | None = None,
    ) -> None:
        self.nodes = nodes
        self._tmp = None if workdir is not None else tempfile.mkdtemp(prefix="flwr-deploy-")
        self.workdir = Path(workdir or self._tmp or ".")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", **(env or {})}
        # the SuperLink and SuperNodes start `flower-superexec` (then `flwr-serverapp`,
        # `flwr-clientapp`) by name: Flower's environment must come first on PATH
        bindir = str(Path(sys.executable).parent)
        self.env["PATH"] = os.pathsep.join([bindir, self.env.get("PATH", "")])
        self.env["FLWR_HOME"] = str(self.workdir / "flwr-home")
        self.node_config = dict(node_config or {})
        self.port = free_port()
        self.superlink: subprocess.Popen[bytes] | None = None
        self.supernodes: list[subprocess.Popen[bytes]] = []

    # -- processes --------------------------------------------------------------------------
    def _start(self, name: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.workdir,
            start_new_session=True,  # its own process group: killpg reaches its children
        )

    def start(self, timeout_s: float = 60.0) -> LocalDeployment:
        home = Path(self.env["FLWR_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n'
            f'[superlink.{CONNECTION}]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n',
            encoding="utf-8",
        )
        self.superlink = self._start(
            "superlink",
            [
                _bin("flower-superlink"),
                "--insecure",
                "--port",
                str(self.port),
                "--disable-runtime-dependency-installation",
            ],
        )
        self._wait_listening(self.port, timeout_s, "superlink")
        for i in range(self.nodes):
            self.start_node(i)
        return self

    def start_node(self, i: int) -> subprocess.Popen[bytes]:
        config = f"partition-id={i} num-partitions={self.nodes} {self.node_config.get(i, '')}"
        node = self._start(
            f"supernode-{i}",
            [
                _bin("flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--port",
                str(free_port()),
                "--node-config",
                config.strip(),
            ],
        )
        self.supernodes.append(node)
        return node

    def _wait_listening(self, port: int, timeout_s: float, name: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            proc = self.superlink
            if proc is not None and proc.poll() is not None:
                log = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"the {name} exited early:\n{log}")
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"the {name} did not listen on port {port} within {timeout_s:g}s")

    def run(
        self,
        app: Path,
        run_config: str | None = None,
        timeout_s: float = 600.0,
    ) -> subprocess.CompletedProcess[str]:
        """``flwr run <app> local-deployment --stream``; its output, after the run ends."""
        argv = [_bin("flwr"), "run", str(app), CONNECTION, "--stream"]
        if run_config:
            argv += ["--run-config", run_config]
        return subprocess.run(
            argv,
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )

    def kill_node(self, i: int) -> None:
        """SIGKILL SuperNode ``i`` and every process it started (SuperExec, ClientApps)."""
        proc = self.supernodes[i]
        family = _descendants(proc.pid)
        _killpg(proc, signal.SIGKILL)
        for pid in family:
            _kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop every process started here and every process those started, then clean up.

        Flower starts some helpers in sessions of their own (the SuperLink's SuperExec), so a
        process group does not reach them all: their ids are collected from ``/proc`` first.
        """
        procs = [*self.supernodes, *([self.superlink] if self.superlink else [])]
        family = {pid for proc in procs for pid in _descendants(proc.pid)}
        for proc in procs:
            _killpg(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _killpg(proc, signal.SIGKILL)  # the group: children that ignored SIGTERM too
            proc.wait()
        family |= {pid for pid in family for pid in _descendants(pid)}
        for pid in family:
            _kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0  # until init has reaped them
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in family):
            time.sleep(0.1)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def logs(self) -> str:
        """Every process's log, for a failure message."""
        return "\n".join(
            f"==== {p.name}\n{p.read_text(errors='replace')[-6000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )

    def __enter__(self) -> LocalDeployment:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _killpg(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # start_new_session: the group id is the pid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--app", type=Path, default=HERE)
    parser.add_argument("--run-config", default="", help="extra run config, 'key=value ...'")
    args = parser.parse_args(argv)
    run_config = f"num-nodes={args.nodes} num-server-rounds={args.rounds} {args.run_config}"
    with LocalDeployment(args.nodes) as deployment:
        result = deployment.run(args.app.resolve(), run_config.strip())
        print(result.stdout)
        if result.returncode != 0:
            print(result.stderr, file=sys.stderr)
            print(deployment.logs(), file=sys.stderr)
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
