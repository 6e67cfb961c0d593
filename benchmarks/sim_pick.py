"""Pick success in simulation (``make bench``): the parameter sets of issue 12 on the same 50 scenes.

Runs ``graspnet-edge sim-eval`` with benchmarks/sim_params/{official,previous_defaults,new_defaults}.yaml
on GraspNet (exported once to artifacts/graspnet_split for speed: the same weights, same grasps)
over oblique and top-down views, plus GR-ConvNet on the top-down views. Extra arguments go to
sim-eval and override these (e.g. ``--seeds 0:10``). Writes artifacts/sim_pick/{report.json,contact_sheet.png}.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, machine_line, shared_dir  # noqa: E402

PARAMS = ("official", "previous_defaults", "new_defaults")


def split_model(shared: Path) -> Path:
    """The shared checkpoint as a split model (exported once; the split runtime is ~10x faster on CPU)."""
    out = REPO / "artifacts" / "graspnet_split"
    if not (out / "manifest.json").is_file():
        from graspnet_edge_ros.cli import main as cli_main

        if cli_main(["export", "--checkpoint", str(shared / "models" / "graspnet_edge_grasp.pth"),
                     "--split", "--output", str(out)]) != 0:
            raise SystemExit("export of the split model failed")
    return out


def main(argv=None) -> int:
    from graspnet_edge_ros.cli import main as cli_main

    shared = shared_dir()
    out = REPO / "artifacts" / "sim_pick"
    out.mkdir(parents=True, exist_ok=True)
    args = ["sim-eval", "--model", str(split_model(shared)),
            "--planar-model", str(shared / "models" / "grconvnet3_cornell_rgbd_ch16.pt"),
            "--seeds", "0:50", "--views", "oblique,topdown", "--resolution", "640x480", "--top-k", "5",
            "--json", str(out / "report.json"), "--contact-sheet", str(out / "contact_sheet.png")]
    for name in PARAMS:
        args += ["--params", str(REPO / "benchmarks" / "sim_params" / f"{name}.yaml")]
    print(f"### Pick success in simulation ({machine_line()})", flush=True)
    return cli_main(args + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
