"""Pick success in simulation (``make bench``): the parameter sets of issue 12 on the same 50 scenes.

Runs ``graspnet-edge sim-eval`` with benchmarks/sim_params/{official,previous_defaults,new_defaults}.yaml
on GraspNet (exported as a split model for speed, ~1 s per run: the same weights, same grasps)
over oblique and top-down views, plus GR-ConvNet on the top-down views. Extra arguments go to
sim-eval and override these (e.g. ``--seeds 0:10``). Writes artifacts/sim_pick/{report.json,contact_sheet.png}.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, machine_line, shared_dir, split_model_or_export  # noqa: E402

PARAMS = ("official", "previous_defaults", "new_defaults")


def main(argv=None) -> int:
    from graspnet_edge_ros.cli import main as cli_main

    shared = shared_dir()
    out = REPO / "artifacts" / "sim_pick"
    out.mkdir(parents=True, exist_ok=True)
    print(f"### Pick success in simulation ({machine_line()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="graspnet_sim_pick_") as scratch:
        # Exported each run (~1 s of a ~15 min run): a cached export would lag behind the exporter.
        args = ["sim-eval", "--model", split_model_or_export(None, scratch),
                "--planar-model", str(shared / "models" / "grconvnet3_cornell_rgbd_ch16.pt"),
                "--seeds", "0:50", "--views", "oblique,topdown", "--resolution", "640x480", "--top-k", "5",
                "--json", str(out / "report.json"), "--contact-sheet", str(out / "contact_sheet.png")]
        for name in PARAMS:
            args += ["--params", str(REPO / "benchmarks" / "sim_params" / f"{name}.yaml")]
        return cli_main(args + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
