"""GraspNet's constructor constants, torch-free (shared by the model, the manifest and the runtime)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class GraspNetConfig:
    """Constructor constants of the official model (graspnet-baseline ``GraspNet.__init__``)."""

    num_view: int = 300
    num_angle: int = 12
    num_depth: int = 4
    cylinder_radius: float = 0.05
    hmin: float = -0.02
    hmax_list: tuple[float, ...] = (0.01, 0.02, 0.03, 0.04)
    crop_nsample: int = 64
    # (npoint, radius, nsample) of SA1..SA4; SA2..SA4 centres are prefixes of SA1's FPS order.
    sa_layers: tuple[tuple[int, float, int], ...] = field(
        default=((2048, 0.04, 64), (1024, 0.1, 32), (512, 0.2, 16), (256, 0.3, 16)))

    @property
    def num_seed(self) -> int:
        return self.sa_layers[1][0]

    def to_json(self) -> dict:
        data = asdict(self)
        data["hmax_list"] = list(self.hmax_list)
        data["sa_layers"] = [list(layer) for layer in self.sa_layers]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "GraspNetConfig":
        return cls(
            num_view=int(data["num_view"]), num_angle=int(data["num_angle"]), num_depth=int(data["num_depth"]),
            cylinder_radius=float(data["cylinder_radius"]), hmin=float(data["hmin"]),
            hmax_list=tuple(float(h) for h in data["hmax_list"]), crop_nsample=int(data["crop_nsample"]),
            sa_layers=tuple((int(n), float(r), int(k)) for n, r, k in data["sa_layers"]))
