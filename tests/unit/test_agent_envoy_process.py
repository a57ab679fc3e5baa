"""Envoy's command line, its stats and its log, without starting Envoy."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.agent.envoy_process import (
    EnvoyCommand,
    active_connections,
    describe_exit,
    log_tail,
    read_base_id,
)


def test_command_line(tmp_path: Path) -> None:
    cmd = EnvoyCommand(binary=Path("/usr/bin/envoy"), bootstrap=tmp_path / "envoy.yaml",
                       work_dir=tmp_path, concurrency=2, log_level="debug", drain_time=2.5)
    argv = cmd.argv()
    assert argv[:3] == ["/usr/bin/envoy", "--config-path", str(tmp_path / "envoy.yaml")]
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert pairs["--concurrency"] == "2"
    assert pairs["--log-level"] == "debug"
    assert pairs["--drain-time-s"] == "3"
    assert "--use-dynamic-base-id" in argv
    assert cmd.log_file == tmp_path / "envoy.log"
    wrapped = EnvoyCommand(binary=Path("/usr/bin/envoy"), bootstrap=tmp_path / "envoy.yaml",
                           work_dir=tmp_path, wrapper=("setpriv", "--pdeathsig", "TERM", "--"))
    assert wrapped.argv()[:5] == ["setpriv", "--pdeathsig", "TERM", "--", "/usr/bin/envoy"]


@pytest.mark.parametrize("kwargs", [{"concurrency": 0}, {"log_level": "loud"}])
def test_command_checks_its_values(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        EnvoyCommand(binary=Path("envoy"), bootstrap=tmp_path, work_dir=tmp_path,
                     **kwargs)  # type: ignore[arg-type]


def test_active_connections_count_listeners_but_not_admin() -> None:
    stats = "\n".join([
        "http.admin.downstream_cx_active: 1",
        "listener.admin.downstream_cx_active: 1",
        "listener.admin.main_thread.downstream_cx_active: 1",
        "listener.127.0.0.1_18080.downstream_cx_active: 3",
        "listener.127.0.0.1_18080.worker_0.downstream_cx_active: 3",
        "listener.0.0.0.0_20001.downstream_cx_active: 2",
        "garbage",
    ])
    assert active_connections(stats) == 5
    assert active_connections("") == 0


def test_log_tail_reads_only_this_start(tmp_path: Path) -> None:
    log = tmp_path / "envoy.log"
    log.write_text("old 1\nold 2\n")
    offset = log.stat().st_size
    with log.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(30)))
    tail = log_tail(log, offset, 5)
    assert tail == [f"line {i}" for i in range(25, 30)]
    assert log_tail(log, log.stat().st_size, 5) == []
    assert log_tail(tmp_path / "missing.log", 0, 5) == []


def test_describe_exit() -> None:
    assert describe_exit(1) == "exited with code 1"
    assert describe_exit(-9) == "was killed by SIGKILL"


def test_a_relative_work_dir_gives_envoy_absolute_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Envoy's cwd is the work dir, so the default relative ``--work-dir`` must not reach
    its command line as a relative path (it would be resolved twice)."""
    monkeypatch.chdir(tmp_path)
    work = Path(".gossamer/proxy-backend-1")
    cmd = EnvoyCommand(binary=Path("/usr/bin/envoy"), bootstrap=work / "envoy.yaml",
                       work_dir=work)
    argv = cmd.argv()
    assert argv[argv.index("--config-path") + 1] == str(tmp_path / work / "envoy.yaml")
    assert argv[argv.index("--base-id-path") + 1] == str(tmp_path / work / "envoy-base-id")
    assert cmd.log_file == tmp_path / work / "envoy.log"


def test_a_later_epoch_joins_the_running_envoys_base_id(tmp_path: Path) -> None:
    """Epoch 0 picks a base id and writes it down; a hot restart passes that id and its
    epoch, never a dynamic id (it would not find its parent); both get a parent
    shutdown time past the drain time."""
    cmd = EnvoyCommand(binary=Path("/usr/bin/envoy"), bootstrap=tmp_path / "envoy.yaml",
                       work_dir=tmp_path, drain_time=1)
    first = cmd.argv()
    assert "--restart-epoch" not in first and "--base-id" not in first
    later = cmd.argv(epoch=2, base_id=7310)
    pairs = dict(zip(later[1::2], later[2::2], strict=False))
    assert pairs["--base-id"] == "7310" and pairs["--restart-epoch"] == "2"
    assert "--use-dynamic-base-id" not in later and "--base-id-path" not in later
    for argv in (first, later):
        drain = int(argv[argv.index("--drain-time-s") + 1])
        assert int(argv[argv.index("--parent-shutdown-time-s") + 1]) > drain
    with pytest.raises(ValueError):
        cmd.argv(epoch=1)


def test_read_base_id(tmp_path: Path) -> None:
    path = tmp_path / "envoy-base-id"
    assert read_base_id(path) is None
    path.write_text("46711912\n")
    assert read_base_id(path) == 46711912
    path.write_text("not a number")
    assert read_base_id(path) is None
