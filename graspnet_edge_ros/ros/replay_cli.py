"""``graspnet-edge replay``: start the grasp node, play a bag into it, record and summarise its output.

Importing this module needs no ROS (rclpy is imported when the command runs), so
``graspnet-edge --help`` works on machines without it.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from graspnet_edge_ros import NODE_NAME
from graspnet_edge_ros.errors import EXIT_ERROR, EXIT_OK, ConfigError

STOP_TIMEOUT_S = 15.0
CLEAN_EXIT_CODES = (0, -signal.SIGINT, 128 + signal.SIGINT)


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="start the ROS 2 node, play a bag into it, record its output and print a summary",
        description="Starts `python -m graspnet_edge_ros.ros.node` with the given model and parameters, "
                    "waits until it is on the graph, plays BAG at its recorded pace (times --rate), "
                    "records ~/grasps, ~/markers and /diagnostics into --record, prints the per-stage "
                    "latencies and the best grasps of the last result, and stops the node.")
    p.add_argument("bag", help="rosbag2 directory (mcap or sqlite3) or a .mcap/.db3 file")
    p.add_argument("--model", required=True, help="checkpoint, .onnx file or split directory (model_path)")
    p.add_argument("--backend", choices=["torch", "onnxruntime", "hobot_dnn"], default=None)
    p.add_argument("--params-file", help="ROS 2 parameter YAML for the node")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1 = recorded pace)")
    p.add_argument("--record", required=True,
                   help="output: OUT.mcap = one MCAP file, otherwise a rosbag2 directory (MCAP storage)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="node parameter override (repeatable), e.g. --param sampling_seed=0")
    p.add_argument("--overlay-dir", help="write an overlay PNG of the last ok result on its bag frame here")
    p.add_argument("--node-name", default=NODE_NAME, help="name given to the node (-r __node:=)")
    p.add_argument("--node-log", help="write the node's stdout/stderr to this file (default: this terminal)")
    p.add_argument("--start-timeout", type=float, default=120.0,
                   help="seconds to wait for the node (model load and warm-up) and its subscriptions")
    p.add_argument("--drain-timeout", type=float, default=60.0,
                   help="seconds to wait for results after the last frame")
    p.add_argument("--top", type=int, default=10, help="grasps shown from the last result")
    p.add_argument("--summary-json", help="also write the summary as JSON here")
    p.add_argument("--every-frame", action="store_true",
                   help="regression mode: publish the next frame only after the node answered the previous "
                        "one, so every bag frame gets exactly one result whatever the machine's speed")
    p.set_defaults(func=cmd_replay)


def parse_param_overrides(items) -> dict[str, str]:
    """``["name=value", ...]`` (or ROS-style ``name:=value``) -> {name: value}; ConfigError if malformed."""
    params = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().removesuffix(":")
        if not sep or not name:
            raise ConfigError(f"--param needs NAME=VALUE, got {item!r}")
        params[name] = value
    return params


def reliable_inputs_for_lossy_dds(params: dict, file_params: dict) -> str:
    """Under Fast DDS 2.x (Jazzy, Humble) best-effort HD images from this process get lost (see
    ``fastdds_profile.best_effort_large_images_are_lossy``): unless the user chose ``qos_reliability``, the
    node started here reads its inputs reliably. Adds it to ``params``; returns the notice to print
    ("" when nothing changed)."""
    from graspnet_edge_ros.ros.fastdds_profile import best_effort_large_images_are_lossy

    if "qos_reliability" in params or "qos_reliability" in file_params or not best_effort_large_images_are_lossy():
        return ""
    params["qos_reliability"] = "reliable"
    return ("replay: Fast DDS 2.x loses best-effort HD images between processes: the node started here reads its "
            "inputs reliably (qos_reliability:=reliable; --param qos_reliability=best_effort to keep the default)")


def node_command(model, *, backend=None, params_file=None, params=None, node_name=NODE_NAME) -> list[str]:
    """argv that starts the node with this interpreter; ``-p`` overrides come after the file."""
    command = [sys.executable, "-m", "graspnet_edge_ros.ros.node", "--ros-args",
               "-r", f"__node:={node_name}", "-p", f"model_path:={Path(model).resolve()}"]
    if backend:
        command += ["-p", f"backend:={backend}"]
    if params_file:
        command += ["--params-file", str(Path(params_file).resolve())]
    for name, value in (params or {}).items():
        command += ["-p", f"{name}:={value}"]
    return command


def node_environment() -> dict[str, str]:
    """This process's environment, with the directory this package was imported from first on
    PYTHONPATH, so the node runs the same code (e.g. the source tree under pytest), and without
    the replay's Fast DDS profile (the node runs with the user's DDS settings)."""
    import graspnet_edge_ros

    from graspnet_edge_ros.ros.fastdds_profile import large_data_profile_path, profile_env_variable

    env = dict(os.environ)
    variable = profile_env_variable()
    if env.get(variable) == str(large_data_profile_path()):
        del env[variable]  # the replay's own transport tuning, not the node's
    root = str(Path(graspnet_edge_ros.__file__).resolve().parents[1])
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in parts if p != root])
    return env


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the replay dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class NodeProcess:
    """The node as a child process: started on enter, stopped with SIGINT (then SIGTERM, SIGKILL)."""

    def __init__(self, command: list[str], log_path=None, env: dict[str, str] | None = None, cwd=None):
        self.command = command
        self.log_path = log_path
        self.env = env  # default: node_environment()
        self.cwd = cwd  # `python -m` puts the working directory first on sys.path
        self.process: subprocess.Popen | None = None
        self._log = None
        self.died_early: int | None = None  # exit code if it exited before stop()
        self._stopped: tuple[int | None, str] | None = None

    def __enter__(self) -> "NodeProcess":
        output = None
        if self.log_path:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
            output = self._log
        # Own process group: a Ctrl-C in the terminal reaches the replay only, which forwards it.
        self.process = subprocess.Popen(self.command, env=self.env or node_environment(), cwd=self.cwd, stdout=output,
                                        stderr=subprocess.STDOUT if output else None, stdin=subprocess.DEVNULL,
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        if self.died_early is None:
            self.died_early = self.process.returncode
        return False

    def stop(self) -> tuple[int | None, str]:
        """(exit code, how it was stopped); later calls return the first answer."""
        if self.process is None:
            return None, "not started"
        if self._stopped is not None:
            return self._stopped
        how = "exited by itself"
        if self.process.poll() is None:
            how = "SIGINT"
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                how = "SIGTERM after SIGINT timed out"
                self.process.terminate()
                try:
                    self.process.wait(5.0)
                except subprocess.TimeoutExpired:
                    how = "SIGKILL after SIGTERM timed out"
                    self.process.kill()
                    self.process.wait()
        elif self.died_early is None:
            self.died_early = self.process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        self._stopped = (self.process.returncode, how)
        return self._stopped


class _StopSignals:
    """SIGINT/SIGTERM set ``event`` (the replay then stops playing, flushes and summarises)."""

    def __init__(self):
        import threading

        self.event = threading.Event()
        self.name = ""
        self._previous = {}

    def __enter__(self) -> "_StopSignals":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, _frame) -> None:
        self.name = signal.Signals(signum).name
        self.event.set()

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def cmd_replay(args) -> int:
    from graspnet_edge_ros.files import check_output_directory, check_output_file
    from graspnet_edge_ros.ros.params import overrides_from_strings
    from graspnet_edge_ros.ros.replay import ReplayError, ReplayInterrupted, output_topics, replay_bag

    bag = Path(args.bag)
    if not bag.exists():
        from graspnet_edge_ros.errors import InputError

        raise InputError(f"bag not found: {bag}")
    if not Path(args.model).exists():
        from graspnet_edge_ros.errors import ModelFormatError

        raise ModelFormatError(f"model not found: {args.model}")
    if Path(args.record).exists():
        raise ConfigError(f"{args.record} exists already; choose a new --record path")
    params = parse_param_overrides(args.param)
    overrides_from_strings(params)  # unknown names (did you mean ...?) and bad values fail here, not in the node
    file_params = {}
    if args.params_file:
        from graspnet_edge_ros.config import load_yaml

        file_params = load_yaml(args.params_file, args.node_name)  # missing or malformed: one line now
    notice = reliable_inputs_for_lossy_dds(params, file_params)
    if notice:
        print(notice, flush=True)
    # Outputs are checked before the node starts (a typo must not cost a model load and a replay).
    if Path(args.record).suffix == ".mcap":
        check_output_file(args.record, "--record")
    else:
        check_output_directory(Path(args.record).parent, "--record")
    for option, path in (("--summary-json", args.summary_json), ("--node-log", args.node_log)):
        if path:
            check_output_file(path, option)
    if args.overlay_dir:
        check_output_directory(args.overlay_dir, "--overlay-dir")
    command = node_command(args.model, backend=args.backend, params_file=args.params_file, params=params,
                           node_name=args.node_name)
    print("starting node: " + " ".join(command[1:]), flush=True)
    node = NodeProcess(command, args.node_log)
    summary = None
    died = None
    with _StopSignals() as signals, node:
        try:
            summary = replay_bag(bag, args.record, rate=args.rate, node_name=args.node_name,
                                 topics=output_topics(args.node_name), start_timeout_s=args.start_timeout,
                                 drain_timeout_s=args.drain_timeout, alive=node.alive,
                                 log=lambda text: print(text, flush=True), every_frame=args.every_frame,
                                 stop=signals.event, reliable_inputs=str(
                                     {**file_params, **params}.get("qos_reliability", "")) == "reliable")
        except ReplayError as exc:
            _write_failure_json(args.summary_json, exc, signals.name)
            if isinstance(exc, ReplayInterrupted):
                exc.args = (f"{signals.name or 'stopped'} {exc}",)
            raise
        finally:
            code, how = node.stop()
            died = node.died_early
            print(f"node stopped ({how}, exit code {code})" if died is None
                  else f"node DIED during the replay (exit code {died})", flush=True)
    if signals.name:
        summary.interrupted = f"{signals.name} received"
    print()
    print(summary.table())
    print()
    print(summary.top_grasps_table(args.top))
    if args.summary_json:
        from graspnet_edge_ros.ros.replay_summary import summary_json

        Path(args.summary_json).write_text(summary_json(summary) + "\n")
        print(f"summary -> {args.summary_json}")
    if args.overlay_dir:
        _write_overlay(args, bag, summary, params)
    if signals.name:
        print(f"graspnet-edge replay: stopped by {signals.name}; recording flushed", file=sys.stderr)
        return 128 + int(getattr(signal, signals.name))
    if died is not None:
        return EXIT_ERROR
    if summary.frames_in and not summary.results_out:
        print("graspnet-edge replay: the node published no result", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _write_failure_json(path, error, signal_name: str) -> None:
    if path:
        import json

        Path(path).write_text(json.dumps({"error": f"{type(error).__name__}: {error}",
                                          "interrupted": signal_name or None}, indent=2) + "\n")


def _write_overlay(args, bag, summary, params) -> None:
    from graspnet_edge_ros.config import load_yaml
    from graspnet_edge_ros.ros.replay_summary import FrameMismatchError, save_result_overlay

    result = summary.last_result("ok")
    if result is None:
        print("overlay: no ok result to draw")
        return
    values = load_yaml(args.params_file) if args.params_file else {}
    values.update(params)
    target = str(values.get("target_frame", "") or "")
    if target and target != result.frame_id:
        print(f"overlay: skipped, result frame {result.frame_id!r} is not the image frame")
        return
    stamp = result.stamp_ns
    path = Path(args.overlay_dir) / f"overlay_{stamp // 10**9}_{stamp % 10**9:09d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        save_result_overlay(path, bag, result, tcp_offset_m=float(values.get("tcp_offset_m", 0.0) or 0.0))
    except FrameMismatchError as exc:
        print(f"overlay: skipped, {exc}")
        return
    print(f"overlay of the last ok result (stamp {stamp / 1e9:.3f}) -> {path}")


def main(argv=None) -> int:
    """``python -m graspnet_edge_ros.ros.replay_cli BAG ...`` = ``graspnet-edge replay BAG ...``."""
    from graspnet_edge_ros.cli import main as cli_main

    return cli_main(["replay", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
