"""Pick-success figures, the printed table, JSON and the contact sheet of a sim-eval run.

Definitions (per configuration and view; a "scene" is one seed seen from one view):

* top-1 success: share of scenes whose rank-0 grasp lifted an object (no grasp = failure);
* success@K: share of scenes where at least one of the top K grasps lifted an object;
* precision@K: lifted / executed over all top-K grasps of all scenes (pooled);
* pre-grasp collision rate: share of the executed top-K grasps whose gripper, at the pre-grasp
  pose, overlapped the table, the floor or an object; "top-1 pre-grasp collisions": share of
  scenes whose rank-0 grasp did;
* grasps per scene: grasps the detector published (before taking the top K);
* time per scene: render + detection + execution of the top K, seconds.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class GraspRow:
    rank: int
    score: float
    width: float
    success: bool
    pre_grasp_collision: bool
    reason: str
    lifted_label: int = 0
    collided_with: str = ""
    # the executed grasp in the world frame (z up, table top at scenes.TABLE_TOP_Z), m
    point: list = field(default_factory=list)
    approach: list = field(default_factory=list)
    closing: list = field(default_factory=list)
    depth: float = 0.0


@dataclass
class SceneRow:
    config: str
    seed: int
    view: str
    status: str
    reason: str
    num_grasps: int
    grasps: list = field(default_factory=list)     # GraspRow of the executed top K
    render_s: float = 0.0
    detect_ms: float = 0.0
    execute_s: float = 0.0

    @property
    def top1_success(self) -> bool:
        return bool(self.grasps) and self.grasps[0].success

    @property
    def any_success(self) -> bool:
        return any(g.success for g in self.grasps)

    @property
    def time_s(self) -> float:
        return self.render_s + self.detect_ms / 1000.0 + self.execute_s


def summarize(rows: list[SceneRow]) -> dict:
    """Figures of one group of rows (see the module docstring)."""
    executed = [g for row in rows for g in row.grasps]
    scenes = len(rows)

    def share(count, total):
        return float(count) / total if total else 0.0

    return {
        "scenes": scenes,
        "top1_success": share(sum(r.top1_success for r in rows), scenes),
        "success_at_k": share(sum(r.any_success for r in rows), scenes),
        "precision_at_k": share(sum(g.success for g in executed), len(executed)),
        "pre_grasp_collision_rate": share(sum(g.pre_grasp_collision for g in executed), len(executed)),
        "top1_pre_grasp_collision": share(sum(bool(r.grasps) and r.grasps[0].pre_grasp_collision
                                              for r in rows), scenes),
        "executed_grasps": len(executed),
        "lifted_grasps": int(sum(g.success for g in executed)),
        "grasps_per_scene": float(np.mean([r.num_grasps for r in rows])) if rows else 0.0,
        "no_grasp_scenes": int(sum(r.num_grasps == 0 for r in rows)),
        "time_per_scene_s": float(np.mean([r.time_s for r in rows])) if rows else 0.0,
        "detect_ms_per_scene": float(np.mean([r.detect_ms for r in rows])) if rows else 0.0,
    }


def summaries(rows: list[SceneRow]) -> list[dict]:
    """One summary per (configuration, view) in first-seen order, then per configuration over all views."""
    groups: dict[tuple, list] = {}
    for row in rows:
        groups.setdefault((row.config, row.view), []).append(row)
        groups.setdefault((row.config, "all"), []).append(row)
    out = []
    for (config, view), members in groups.items():
        if view == "all" and len({m.view for m in members}) < 2:
            continue
        out.append({"config": config, "view": view, **summarize(members)})
    configs = list(dict.fromkeys(s["config"] for s in out))
    return sorted(out, key=lambda s: (configs.index(s["config"]), s["view"] == "all"))


def format_table(summary_rows: list[dict], top_k: int) -> str:
    header = (f"{'configuration':<22} {'view':<8} {'scenes':>6} {'top-1':>6} {f'succ@{top_k}':>7} "
              f"{f'prec@{top_k}':>7} {'pre-coll':>8} {'top1-coll':>9} {'grasps':>6} {'none':>5} {'s/scene':>7}")
    lines = [header, "-" * len(header)]
    for s in summary_rows:
        lines.append(f"{s['config']:<22.22} {s['view']:<8} {s['scenes']:>6} {s['top1_success']:>6.2f} "
                     f"{s['success_at_k']:>7.2f} {s['precision_at_k']:>7.2f} "
                     f"{s['pre_grasp_collision_rate']:>8.2f} {s['top1_pre_grasp_collision']:>9.2f} "
                     f"{s['grasps_per_scene']:>6.1f} {s['no_grasp_scenes']:>5} {s['time_per_scene_s']:>7.2f}")
    return "\n".join(lines)


def report_dict(rows: list[SceneRow], settings: dict) -> dict:
    return {"settings": settings, "summary": summaries(rows), "scenes": [asdict(r) for r in rows]}


def write_json(path, report: dict) -> None:
    with open(path, "w") as handle:
        json.dump(report, handle, indent=1)


# --------------------------------------------------------------------------------------------------
# Progress bar: tqdm when installed, else a one-line counter on stderr.

def progress(total: int, description: str, enabled: bool = True):
    if not enabled:
        return _NoProgress()
    try:
        from tqdm import tqdm

        return tqdm(total=total, desc=description, unit="scene", file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        return _SimpleProgress(total, description)


class _NoProgress:
    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass

    def close(self):
        pass


class _SimpleProgress(_NoProgress):
    def __init__(self, total, description):
        self.total, self.description, self.done = total, description, 0

    def update(self, n=1):
        self.done += n
        print(f"\r{self.description}: {self.done}/{self.total}", end="", file=sys.stderr, flush=True)

    def close(self):
        print(file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# Contact sheet

TILE_WIDTH = 256
SUCCESS_RGB, PARTIAL_RGB, FAIL_RGB = (40, 170, 60), (230, 150, 20), (200, 40, 40)


def scene_tile(color, grasps, intrinsics, row: SceneRow) -> np.ndarray:
    """The scene's overlay (top-K grasps, visualization.draw_overlay) framed green when the top-1
    grasp lifted an object, orange when another of the top K did, red otherwise, with a caption:
    seed/view and per rank ok / x (failed) / C (pre-grasp collision)."""
    from PIL import Image, ImageDraw

    from graspnet_edge_ros.visualization import draw_overlay

    overlay = draw_overlay(color, grasps, intrinsics, max_grasps=len(grasps), show_legend=False) \
        if len(grasps) else np.asarray(color)
    image = Image.fromarray(overlay).resize((TILE_WIDTH, round(TILE_WIDTH * overlay.shape[0] / overlay.shape[1])))
    frame = SUCCESS_RGB if row.top1_success else PARTIAL_RGB if row.any_success else FAIL_RGB
    caption_height, border = 30, 4
    tile = Image.new("RGB", (image.width + 2 * border, image.height + 2 * border + caption_height), frame)
    tile.paste(image, (border, border))
    draw = ImageDraw.Draw(tile)
    marks = " ".join(f"{g.rank + 1}:{'ok' if g.success else 'C' if g.pre_grasp_collision else 'x'}"
                     for g in row.grasps) or "no grasp"
    draw.text((border + 2, image.height + border + 1), f"seed {row.seed} {row.view}", fill=(255, 255, 255))
    draw.text((border + 2, image.height + border + 14), marks, fill=(255, 255, 255))
    return np.asarray(tile)


def save_contact_sheet(path, sections: list[tuple[str, list]], footer: str, columns: int = 8) -> None:
    """One section per configuration: a title line, then its tiles in rows of ``columns``."""
    from PIL import Image, ImageDraw

    tiles = [t for _, section in sections for t in section]
    if not tiles:
        tiles = [np.zeros((10, 10, 3), np.uint8)]
    tile_h = max(t.shape[0] for t in tiles)
    tile_w = max(t.shape[1] for t in tiles)
    title_h, gap = 22, 4
    height = 10 + 16
    for _, section in sections:
        height += title_h + -(-max(len(section), 1) // columns) * (tile_h + gap)
    sheet = Image.new("RGB", (columns * (tile_w + gap) + gap, height + 14 * (footer.count("\n") + 1) + 12),
                      (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    y = 6
    for title, section in sections:
        draw.text((gap, y + 4), title, fill=(255, 255, 255))
        y += title_h
        for index, tile in enumerate(section):
            row, column = divmod(index, columns)
            sheet.paste(Image.fromarray(tile), (gap + column * (tile_w + gap), y + row * (tile_h + gap)))
        y += -(-max(len(section), 1) // columns) * (tile_h + gap)
    draw.text((gap, y + 6), footer, fill=(200, 200, 200))
    sheet.save(path, format="PNG")
