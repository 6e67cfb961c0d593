"""GraspNet training: one process, or DistributedDataParallel under torchrun (gloo on CPU, nccl on GPU).

    python -m graspnet_edge_ros.train --dataset-root ROOT --camera realsense --log-dir logs/rs
    torchrun --nproc_per_node=4 -m graspnet_edge_ros.train --dataset-root ROOT --camera realsense ...

Defaults follow graspnet-baseline ``train.py`` / ``command_train.sh`` (spec §9.5): Adam lr 1e-3,
batch 2 per process, 18 epochs, lr x0.1 at epochs 8, 12, 16, BN momentum
max(0.5 * 0.5^floor(epoch / 2), 0.001), 20000 points, scenes 0-99, frames 0-255. The global
batch is batch_size x world_size (the lr is not scaled, as in GraspNet-Edge's DDP script).
Unlike that script, every epoch reshuffles (``set_epoch``), only rank 0 logs and saves, and
``--resume`` works.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from graspnet_edge_ros.errors import EXIT_ERROR, EXIT_INPUT, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from graspnet_edge_ros.errors import ConfigError, GraspNetEdgeError, InputError, ModelFormatError
from graspnet_edge_ros.model.graspnet import GraspNet
from graspnet_edge_ros.train.checkpoint import load_for_training, save_checkpoint
from graspnet_edge_ros.train.dataset import DatasetLayout, GraspLabelStore, GraspNetDataset, collate
from graspnet_edge_ros.train.indices import parse_index_list
from graspnet_edge_ros.train.labels import generate_grasp_targets
from graspnet_edge_ros.train.loss import graspnet_loss

BN_MOMENTUM_INIT, BN_MOMENTUM_MIN = 0.5, 0.001
CHECKPOINT_NAME = "checkpoint.tar"
STEP_LOG_NAME = "train_log.jsonl"


class GraspNetTrainingStep(nn.Module):
    """Model + online labels + loss in one forward, so DDP sees every parameter's use.

    Training composes the inference building blocks: backbone and ApproachNet, then labels for
    the seeds, then the crop centred at the matched label grasp point with the label rotation at
    the predicted top view (the official training-time CloudCrop), then the heads.
    """

    def __init__(self, model: GraspNet, crop_chunk_size: int | None = 256):
        super().__init__()
        self.model = model
        self.crop_chunk_size = crop_chunk_size

    def forward(self, point_clouds: torch.Tensor, objectness_label: torch.Tensor, batch: dict):
        model = self.model
        end_points = model.backbone_forward(point_clouds)
        targets = generate_grasp_targets(end_points["fp2_xyz"], end_points["grasp_top_view_inds"], batch,
                                         model.template_views)
        grouped = model.crop_inputs(point_clouds, targets["grasp_point"], targets["grasp_view_rot"],
                                    chunk_size=self.crop_chunk_size)
        head = model.grasp_generator(grouped)
        end_points.update(model.grasp_outputs(head, end_points["fp2_xyz"].shape[1]))
        return graspnet_loss(end_points, targets, objectness_label)


def learning_rate(epoch: int, base: float, decay_steps: list[int], decay_rates: list[float]) -> float:
    """Official ``get_current_lr``: multiply by each rate whose step epoch has been reached."""
    lr = base
    for step, rate in zip(decay_steps, decay_rates):
        if epoch >= step:
            lr *= rate
    return lr


def bn_momentum(epoch: int, decay_step: int = 2, decay_rate: float = 0.5) -> float:
    """Official BN momentum schedule: max(0.5 * rate^floor(epoch / step), 0.001)."""
    return max(BN_MOMENTUM_INIT * decay_rate ** int(epoch / decay_step), BN_MOMENTUM_MIN)


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


# ------------------------------------------------------------------------------------ arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m graspnet_edge_ros.train",
                                description="Train GraspNet on GraspNet-1Billion (single process or torchrun/DDP).")
    p.add_argument("--dataset-root", required=True, help="GraspNet-1Billion root (scenes/, grasp_label/, ...)")
    p.add_argument("--camera", required=True, choices=["realsense", "kinect"])
    p.add_argument("--tolerance-dir", help="XXX_tolerance.npy directory (default DATASET_ROOT/tolerance)")
    p.add_argument("--log-dir", default="logs/log", help="checkpoint.tar and logs go here")
    p.add_argument("--resume", help="training checkpoint to resume (or a bare state dict to start from)")
    p.add_argument("--scenes", default="0-99", help="training scenes (official train split 0-99)")
    p.add_argument("--frames", default="0-255", help="frames per scene")
    p.add_argument("--eval-scenes", default="", help="scenes evaluated after each epoch (official: 100-129)")
    p.add_argument("--num-point", type=int, default=20000, help="points per cloud (>= 2048)")
    p.add_argument("--batch-size", type=int, default=2, help="per process; global = this x world size")
    p.add_argument("--max-epoch", type=int, default=18)
    p.add_argument("--learning-rate", type=float, default=0.001)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--lr-decay-steps", default="8,12,16")
    p.add_argument("--lr-decay-rates", default="0.1,0.1,0.1")
    p.add_argument("--bn-decay-step", type=int, default=2)
    p.add_argument("--bn-decay-rate", type=float, default=0.5)
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers per process")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dist-backend", choices=["auto", "gloo", "nccl"], default="auto",
                   help="auto: nccl on GPU, gloo on CPU")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across processes (GPU only)")
    p.add_argument("--no-augment", action="store_true", help="disable flip/rotation augmentation")
    p.add_argument("--no-remove-outlier", action="store_true", help="skip the table-frame workspace crop")
    p.add_argument("--preload-labels", action="store_true",
                   help="load every object's labels before workers fork (official behaviour; needs RAM)")
    p.add_argument("--max-steps-per-epoch", type=int, default=0, help="stop each epoch after K steps (0 = all)")
    p.add_argument("--crop-chunk-size", type=int, default=256, help="seeds per cylinder-query chunk")
    p.add_argument("--seed", type=int, default=0, help="sampling/augmentation/shuffle seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return p


def _float_list(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def check_args(args) -> None:
    from graspnet_edge_ros.model.config import GraspNetConfig

    sa1_points = GraspNetConfig().sa_layers[0][0]
    if args.num_point < sa1_points:
        raise ConfigError(f"--num-point must be >= {sa1_points} (SA1 samples that many centres), got {args.num_point}")
    for name in ("batch_size", "max_epoch", "bn_decay_step"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_workers < 0 or args.max_steps_per_epoch < 0 or args.crop_chunk_size < 1:
        raise ConfigError("--num-workers and --max-steps-per-epoch must be >= 0, --crop-chunk-size >= 1")
    if not args.learning_rate > 0 or args.weight_decay < 0:
        raise ConfigError("--learning-rate must be > 0 and --weight-decay >= 0")
    steps = [int(v) for v in _float_list(args.lr_decay_steps, "--lr-decay-steps")]
    rates = _float_list(args.lr_decay_rates, "--lr-decay-rates")
    if len(steps) != len(rates):
        raise ConfigError(f"--lr-decay-steps has {len(steps)} entries, --lr-decay-rates {len(rates)}")
    args.lr_steps, args.lr_rates = steps, rates
    args.scene_list = parse_index_list(args.scenes, "--scenes")
    args.frame_list = parse_index_list(args.frames, "--frames")
    args.eval_scene_list = parse_index_list(args.eval_scenes, "--eval-scenes") if args.eval_scenes.strip() else []
    if args.resume and not Path(args.resume).is_file():
        raise ModelFormatError(f"--resume: checkpoint not found: {args.resume}")


# ------------------------------------------------------------------------------------ distribution
class Distributed:
    """Process-group facts; a single process (no torchrun) is world size 1 without a group."""

    def __init__(self, device_choice: str, backend_choice: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = torch.cuda.is_available() if device_choice == "auto" else device_choice == "cuda"
        if use_cuda and not torch.cuda.is_available():
            raise ConfigError("--device cuda but torch.cuda.is_available() is False")
        self.device = torch.device(f"cuda:{self.local_rank}" if use_cuda else "cpu")
        self.backend = backend_choice if backend_choice != "auto" else ("nccl" if use_cuda else "gloo")
        if self.backend == "nccl" and not use_cuda:
            raise ConfigError("the nccl backend needs CUDA devices; use --dist-backend gloo on CPU")
        self.enabled = self.world_size > 1

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if self.enabled:
            dist.init_process_group(self.backend, rank=self.rank, world_size=self.world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world_size
        return values

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def stop(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------ loop
def _loader(dataset: GraspNetDataset, args, ddp: Distributed, shuffle: bool) -> tuple[DataLoader, DistributedSampler]:
    sampler = DistributedSampler(dataset, num_replicas=ddp.world_size, rank=ddp.rank, shuffle=shuffle, seed=args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
                        collate_fn=collate, pin_memory=ddp.device.type == "cuda")
    return loader, sampler


def _stat_vector(stats: dict[str, torch.Tensor]) -> tuple[list[str], torch.Tensor]:
    names = sorted(stats)
    return names, torch.stack([stats[n].float() for n in names])


def run_epoch(step_module: nn.Module, loader: DataLoader, ddp: Distributed, optimizer, args, epoch: int,
              log, train: bool) -> float:
    """One pass; returns the mean overall loss over all processes and steps."""
    from tqdm import tqdm

    total = len(loader) if not (train and args.max_steps_per_epoch) else min(len(loader), args.max_steps_per_epoch)
    bar = tqdm(total=total, desc=f"{'epoch' if train else 'eval'} {epoch}", unit="step", dynamic_ncols=True,
               disable=not ddp.is_main or args.no_progress, file=sys.stderr)
    losses = []
    step_module.train(train)
    for step, batch in enumerate(loader):
        if step >= total:
            break
        start = time.perf_counter()
        clouds = batch["point_clouds"].to(ddp.device, non_blocking=True)
        objectness = batch["objectness_label"].to(ddp.device, non_blocking=True)
        with torch.set_grad_enabled(train):
            loss, stats = step_module(clouds, objectness, batch)
            if train:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        names, values = _stat_vector(stats)
        values = ddp.mean(values).cpu()
        row = dict(zip(names, (float(v) for v in values)))
        if not math.isfinite(row["loss/overall_loss"]):      # checked after the reduction: every rank stops
            raise InputError(f"non-finite loss at epoch {epoch} step {step}: {row['loss/overall_loss']}")
        losses.append(row["loss/overall_loss"])
        if ddp.is_main:
            log({"phase": "train" if train else "eval", "epoch": epoch, "step": step,
                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.perf_counter() - start, 3), **row})
            bar.set_postfix(loss=f"{row['loss/overall_loss']:.4f}")
        bar.update(1)
    bar.close()
    return float(np.mean(losses)) if losses else math.nan


def train(args) -> int:
    check_args(args)
    ddp = Distributed(args.device, args.dist_backend)
    if args.sync_bn and ddp.device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA (torch SyncBatchNorm has no CPU implementation)")
    layout = DatasetLayout.create(args.dataset_root, args.camera, args.tolerance_dir)
    labels = GraspLabelStore(layout)
    dataset = GraspNetDataset(layout, args.scene_list, args.frame_list, args.num_point,
                              remove_outlier=not args.no_remove_outlier, augment=not args.no_augment,
                              seed=args.seed, labels=labels)
    eval_dataset = None
    if args.eval_scene_list:
        eval_dataset = GraspNetDataset(layout, args.eval_scene_list, args.frame_list, args.num_point,
                                       remove_outlier=not args.no_remove_outlier, augment=False,
                                       seed=args.seed, labels=labels)
    if args.preload_labels:
        labels.preload(sorted(set(dataset.object_indices) | set(eval_dataset.object_indices if eval_dataset else [])))

    ddp.start()
    try:
        torch.manual_seed(args.seed)
        # Same initial weights on every rank (DDP also broadcasts them); on the device before the
        # optimizer exists, so a resumed Adam state is loaded onto that device.
        model = GraspNet().to(ddp.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        start_epoch = 0
        if args.resume:
            start_epoch, resumed = load_for_training(args.resume, model, optimizer)
            if ddp.is_main:
                print(f"{'resumed' if resumed else 'initial weights from'} {args.resume} (start epoch {start_epoch})",
                      file=sys.stderr)
        step_module: nn.Module = GraspNetTrainingStep(model, args.crop_chunk_size)
        if args.sync_bn:
            step_module = nn.SyncBatchNorm.convert_sync_batchnorm(step_module)
            model = step_module.model
        if ddp.enabled:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[ddp.device.index] if ddp.device.type == "cuda" else None)
        loader, sampler = _loader(dataset, args, ddp, shuffle=True)
        log_dir = Path(args.log_dir)
        log = _step_logger(log_dir, ddp.is_main, args)
        if start_epoch >= args.max_epoch and ddp.is_main:
            print(f"checkpoint epoch {start_epoch} >= --max-epoch {args.max_epoch}: nothing to train", file=sys.stderr)
        for epoch in range(start_epoch, args.max_epoch):
            lr = learning_rate(epoch, args.learning_rate, args.lr_steps, args.lr_rates)
            for group in optimizer.param_groups:
                group["lr"] = lr
            set_bn_momentum(step_module, bn_momentum(epoch, args.bn_decay_step, args.bn_decay_rate))
            sampler.set_epoch(epoch)
            dataset.set_epoch(epoch)
            mean_loss = run_epoch(step_module, loader, ddp, optimizer, args, epoch, log, train=True)
            if eval_dataset is not None:
                eval_loader, _ = _loader(eval_dataset, args, ddp, shuffle=False)
                with torch.no_grad():
                    mean_loss = run_epoch(step_module, eval_loader, ddp, optimizer, args, epoch, log, train=False)
            if ddp.is_main:
                path = save_checkpoint(log_dir / CHECKPOINT_NAME, model, optimizer, epoch + 1, mean_loss)
                print(f"epoch {epoch}: mean {'eval' if eval_dataset else 'train'} loss {mean_loss:.4f}, lr {lr:g} "
                      f"-> {path}", file=sys.stderr)
            ddp.barrier()
    finally:
        ddp.stop()
    return EXIT_OK


def _step_logger(log_dir: Path, is_main: bool, args):
    if not is_main:
        return lambda row: None
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / "args.json").write_text(json.dumps({k: v for k, v in vars(args).items()
                                                   if isinstance(v, (str, int, float, bool, list, type(None)))},
                                                  indent=2) + "\n")
    path = log_dir / STEP_LOG_NAME

    def log(row: dict) -> None:
        with open(path, "a") as handle:
            handle.write(json.dumps(row) + "\n")
    return log


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    is_main = os.environ.get("RANK", "0") == "0"
    try:
        return train(args)
    except GraspNetEdgeError as exc:
        kind, code = {ConfigError: ("configuration error", EXIT_USAGE), InputError: ("bad input", EXIT_INPUT),
                      ModelFormatError: ("model error", EXIT_MODEL)}.get(type(exc), (type(exc).__name__, EXIT_ERROR))
        if is_main:
            print(f"graspnet_edge_ros.train: {kind}: {exc}", file=sys.stderr)
        return code
