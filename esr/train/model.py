"""``ESRModel``: BasicSR's ``SRModel`` with what esr's training adds, and nothing else.

* the contrastive loss gets the LR batch (for its negative) when it is the ``pixel_opt``;
* ``train.grad_clip`` (max global L2 norm, 0 = off), ``train.amp`` (:func:`amp_dtype`: fp16
  autocast with a gradient scaler on CUDA, bf16 autocast on a CPU with native bf16, ignored with
  a one-line note on other CPUs) and ``train.channels_last`` (NHWC weights and batches: a training
  step of RLFN-S on a 2-core AVX2 CPU ran 1.4x faster), next to BasicSR's own ``train.ema_decay``;
* validation scores with :func:`esr.evaluate.evaluate`, the code of ``esr eval``, logs
  Y-PSNR/SSIM to the BasicSR log and tensorboard, appends ``{iter, psnr_y, ssim_y}`` to
  ``val_curve.jsonl`` in the experiment folder and keeps ``models/net_g_best.pth`` (an esr
  checkpoint) with its score in ``net_g_best.json`` so a resumed run keeps the true best;
* a warm start (``path.pretrain_network_g``) is read by esr's safe reader first (a file that is
  not a weights checkpoint is one error line, no code runs), then checked and logged key by key;
* training states hold tensors and plain data only (:mod:`esr.train.state`), written atomically,
  so that the resume loads them with ``weights_only=True``;
* distributed (``opt['dist']``): DistributedDataParallel also on CPU (gloo; BasicSR passes a CUDA
  device id), and at every save each rank's weights digest is gathered and logged by rank 0: the ranks
  must hold identical weights, a mismatch stops the run.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from esr.compat import import_basicsr
from esr.errors import EsrError

import_basicsr()
from basicsr.models.sr_model import SRModel  # noqa: E402
from basicsr.utils import get_root_logger  # noqa: E402
from basicsr.utils.dist_util import master_only  # noqa: E402

from esr.evaluate import evaluate  # noqa: E402
from esr.fileio import append_atomically, replace_atomically, write_bytes_atomically  # noqa: E402
from esr.loading import read_checkpoint, save_checkpoint  # noqa: E402
from esr.train.bridge import weights_only_loads  # noqa: E402
from esr.train.distributed import gather_digests  # noqa: E402
from esr.train.losses import ContrastiveLoss  # noqa: E402
from esr.train.state import plain_data, restore_counters  # noqa: E402


def amp_dtype(device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype ``train.amp`` uses on ``device`` (None: off) and a one-line note for the log.

    CUDA: float16 (with a gradient scaler). CPU: bfloat16 when the CPU computes it natively
    (AMX-BF16 or AVX512-BF16; bf16 has fp32's range, so no scaler), else off: emulated bf16 is
    slower than fp32.
    """
    if device.type == "cuda":
        return torch.float16, "train.amp: fp16 autocast with gradient scaling on CUDA"
    from esr.capabilities import FEATURE_NAMES, native_units

    units = native_units("bf16")
    if units:
        return torch.bfloat16, f"train.amp: bf16 autocast on CPU ({', '.join(units)})"
    return None, f"train.amp is ignored: this CPU has no native bf16 ({FEATURE_NAMES['bf16']}) and no CUDA GPU is used"


def warm_start_report(net: torch.nn.Module, path: str) -> str:
    """One log line: how many of ``net``'s tensors equal those stored in ``path``, and which did not."""
    stored, _ = read_checkpoint(path)
    own = net.state_dict()
    loaded = [k for k, v in own.items() if k in stored and stored[k].shape == v.shape and torch.equal(stored[k], v.cpu())]
    missing = [k for k in own if k not in loaded]
    unused = [k for k in stored if k not in own]
    return (f"initial weights from {path}: {len(loaded)}/{len(own)} tensors loaded "
            f"(first: {', '.join(loaded[:3])}; last: {loaded[-1] if loaded else '-'}); "
            f"not loaded: {missing or 'none'}; unused in file: {unused or 'none'}")


def memory_format_of(opt: dict[str, Any]) -> torch.memory_format:
    """``channels_last`` if ``train.channels_last`` is set, else the default layout."""
    return torch.channels_last if (opt.get("train") or {}).get("channels_last") else torch.contiguous_format


class ESRModel(SRModel):
    """SR model for esr's YAML options (``model_type: ESRModel``)."""

    def __init__(self, opt: dict[str, Any]) -> None:
        super().__init__(opt)
        load_path = self.opt["path"].get("pretrain_network_g")
        if load_path:
            get_root_logger().info(warm_start_report(self.get_bare_model(self.net_g), load_path))

    def load_network(self, net: torch.nn.Module, load_path: str, strict: bool = True,
                     param_key: str | None = "params") -> None:
        read_checkpoint(load_path)  # EsrError (one line) for anything but a weights checkpoint
        with weights_only_loads():
            super().load_network(net, load_path, strict, param_key)

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """BasicSR's state (optimizers, schedulers) as plain data, written atomically."""
        if current_iter == -1:
            return
        state = plain_data({"epoch": epoch, "iter": current_iter,
                            "optimizers": [o.state_dict() for o in self.optimizers],
                            "schedulers": [s.state_dict() for s in self.schedulers]})
        path = Path(self.opt["path"]["training_states"]) / f"{current_iter}.state"
        replace_atomically(path, lambda tmp: torch.save(state, tmp))

    def resume_training(self, resume_state: dict[str, Any]) -> None:
        schedulers = [restore_counters(s, state) for s, state in zip(self.schedulers, resume_state["schedulers"])]
        super().resume_training({**resume_state, "schedulers": schedulers or resume_state["schedulers"]})

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        # the layout is set before DDP wraps the net: DDP's gradient buckets follow the parameters' layout
        net = net.to(self.device, memory_format=memory_format_of(self.opt))
        if self.opt["dist"] and self.device.type == "cpu":
            return torch.nn.parallel.DistributedDataParallel(
                net, find_unused_parameters=self.opt.get("find_unused_parameters", False))
        return super().model_to_device(net)

    def save(self, epoch: int, current_iter: int) -> None:
        super().save(epoch, current_iter)
        if self.opt["dist"]:
            self.check_ranks_agree(current_iter)

    def check_ranks_agree(self, current_iter: int) -> None:
        """Gather every rank's weights digest; rank 0 logs them; EsrError on every rank if they differ."""
        digests = gather_digests(self.get_bare_model(self.net_g).state_dict())
        where = "end" if current_iter == -1 else f"iter {current_iter}"
        if len(set(digests)) != 1:
            raise EsrError(f"{self.opt['name']}: ranks hold different weights at {where}: {digests}")
        get_root_logger().info(f"weights digest at {where}, identical on all {len(digests)} ranks: {digests[0]}")

    def init_training_settings(self) -> None:
        super().init_training_settings()
        train_opt = self.opt["train"]
        self.grad_clip = float(train_opt.get("grad_clip", 0))
        self.autocast_dtype = None
        if train_opt.get("amp"):
            self.autocast_dtype, note = amp_dtype(self.device)
            (get_root_logger().info if self.autocast_dtype else get_root_logger().warning)(note)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)
        self.memory_format = memory_format_of(self.opt)  # net_g has it (model_to_device)

    def feed_data(self, data: dict[str, Any]) -> None:
        super().feed_data(data)
        if self.is_train:  # init_training_settings set the memory format
            self.lq = self.lq.contiguous(memory_format=self.memory_format)
            if hasattr(self, "gt"):
                self.gt = self.gt.contiguous(memory_format=self.memory_format)

    def pixel_loss(self) -> torch.Tensor:
        if isinstance(self.cri_pix, ContrastiveLoss):
            return self.cri_pix(self.output, self.gt, self.lq)
        return self.cri_pix(self.output, self.gt)

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        loss_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
        with torch.autocast(self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None):
            self.output = self.net_g(self.lq)
            l_total = torch.zeros((), device=self.device)
            if self.cri_pix:
                loss_dict["l_pix"] = self.pixel_loss()
                l_total = l_total + loss_dict["l_pix"]
            if self.cri_perceptual:
                l_percep, l_style = self.cri_perceptual(self.output, self.gt)
                for name, value in (("l_percep", l_percep), ("l_style", l_style)):
                    if value is not None:
                        loss_dict[name] = value
                        l_total = l_total + value
        self.scaler.scale(l_total).backward()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer_g)
            loss_dict["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.net_g.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer_g)
        self.scaler.update()
        self.log_dict = self.reduce_loss_dict(loss_dict)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def nondist_validation(self, dataloader, current_iter: int, tb_logger, save_img: bool) -> None:  # noqa: ANN001
        dataset = dataloader.dataset
        # BasicSR's loop leaves current_iter past total_iter for the validation after training.
        current_iter = min(current_iter, int(self.opt["train"]["total_iter"]))
        name = dataset.name
        net = self.net_g_ema if hasattr(self, "net_g_ema") else self.net_g
        was_training = net.training
        net.eval()
        result = evaluate(self.get_bare_model(net), dataset.data_dir, dataset.scale, progress=False)
        net.train(was_training)
        psnr, ssim = result["psnr_y"], result["ssim_y"]
        models_dir = Path(self.opt["path"]["models"])
        best_file = models_dir / "net_g_best.json"
        best = json.loads(best_file.read_text()) if best_file.is_file() else {"psnr_y": float("-inf")}
        if psnr > best["psnr_y"]:
            save_checkpoint(self.get_bare_model(net), models_dir / "net_g_best.pth")
            best = {"iter": current_iter, "psnr_y": psnr, "ssim_y": ssim, "dataset": name}
            write_bytes_atomically(best_file, json.dumps(best).encode())
        get_root_logger().info(
            f"Validation {name} x{dataset.scale} (esr eval metrics), iter {current_iter}: "
            f"Y-PSNR {psnr:.4f} dB, Y-SSIM {ssim:.4f}; best {best['psnr_y']:.4f} dB @ iter {best['iter']}")
        if tb_logger:
            tb_logger.add_scalar(f"metrics/{name}/psnr_y", psnr, current_iter)
            tb_logger.add_scalar(f"metrics/{name}/ssim_y", ssim, current_iter)
        record = {"iter": current_iter, "dataset": name, "psnr_y": psnr, "ssim_y": ssim, "time": time.time()}
        append_atomically(Path(self.opt["path"]["experiments_root"]) / "val_curve.jsonl", json.dumps(record) + "\n")
