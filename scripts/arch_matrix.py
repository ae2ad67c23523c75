"""Which architectures esr loads, upscales, exports and quantizes: each one run end to end.

For every case a spandrel class (or BasicSR's RRDBNet for the new ESRGAN key layout) is built with
seeded random weights, CI-sized, and its state dict saved as a checkpoint file. Then, through esr's
public code paths only:

1. ``esr.load_model(file)``: which checkpoint loader claimed it (esr's detectors or spandrel), the
   descriptor, and the output against spandrel's own call on the same weights (max abs, clamped);
2. :class:`esr.upscaler.Upscaler` (torch backend) on a 37x53 RGB image;
3. :func:`esr.export.graph.build_deploy_graph`: a dynamic graph, else (``DynamicShapeError``) a
   static one at the size the model computes on for 37x53, else the one-line export error; the
   graph in the onnxruntime backend against the torch model on the 37x53 input (max abs);
4. :func:`esr.quantize.pipeline.quantize_onnx` on two calibration crops: the INT8 graph and its
   output PSNR against fp32.

    python scripts/arch_matrix.py                 # every case -> docs/results/archs.json
    python scripts/arch_matrix.py --case SwinIR   # some cases, printed
    python scripts/render_docs.py                 # docs/models.md from the JSON

``tests/test_archs.py`` runs the CI cases with :func:`check_case` and compares each outcome with the
committed row, so the "Your own models" table in docs/models.md cannot drift from what esr does.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "docs" / "results" / "archs.json"
IMAGE_HW = (37, 53)
"""The odd-sized test image (rows, columns)."""
PARITY_TOL = 1e-4
SPANDREL_TOL = 1e-4
"""Max abs difference of esr's model to spandrel's own call (both clamped to [0, 1])."""


@dataclass(frozen=True)
class ArchCase:
    """One architecture to run: ``build(**kwargs)`` makes the torch module whose state dict is the checkpoint.

    ``source``: ``module:Class`` of the builder (spandrel's classes, BasicSR's RRDBNet for the new
    ESRGAN layout). ``kwargs``: CI-sized constructor arguments; ``default_kwargs``: what
    ``scripts/bench_archs.py`` times (the class defaults, with the scale set). ``ci``: run by the test.
    """

    name: str
    source: str
    kwargs: dict[str, Any]
    default_kwargs: dict[str, Any] = field(default_factory=dict)
    ci: bool = True
    suffix: str = ".pth"

    def build(self, default_size: bool = False) -> torch.nn.Module:
        module_name, class_name = self.source.split(":")
        if module_name.startswith("basicsr."):
            from esr.compat import import_basicsr

            import_basicsr()  # BasicSR needs esr's torchvision alias
        cls = getattr(importlib.import_module(module_name), class_name)
        return cls(**(self.default_kwargs if default_size else self.kwargs))


SP = "spandrel.architectures."
CASES: list[ArchCase] = [
    ArchCase("SPAN", SP + "SPAN:SPAN", dict(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=4),
             dict(num_in_ch=3, num_out_ch=3, upscale=4)),
    ArchCase("ESRGAN (old keys)", SP + "ESRGAN:ESRGAN", dict(num_filters=16, num_blocks=2, scale=4),
             dict(scale=4)),
    ArchCase("ESRGAN (new keys, Real-ESRGAN x4)", "basicsr.archs.rrdbnet_arch:RRDBNet",
             dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=16, num_block=2),
             dict(num_in_ch=3, num_out_ch=3, scale=4), suffix=".safetensors"),
    ArchCase("ESRGAN (new keys, Real-ESRGAN x2)", "basicsr.archs.rrdbnet_arch:RRDBNet",
             dict(num_in_ch=3, num_out_ch=3, scale=2, num_feat=16, num_block=2),
             dict(num_in_ch=3, num_out_ch=3, scale=2)),
    ArchCase("Real-ESRGAN Compact", SP + "Compact:Compact", dict(num_feat=16, num_conv=4, upscale=4),
             dict(upscale=4)),
    ArchCase("Compact, RGBA (4 channels)", SP + "Compact:Compact",
             dict(num_in_ch=4, num_out_ch=4, num_feat=16, num_conv=4, upscale=2),
             dict(num_in_ch=4, num_out_ch=4, upscale=2)),
    ArchCase("SwinIR", SP + "SwinIR:SwinIR",
             dict(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2,
                  upsampler="pixelshuffledirect"),
             dict(upscale=4, upsampler="pixelshuffle", window_size=8)),  # the class default 7 does not fit img_size 64
    ArchCase("OmniSR", SP + "OmniSR:OmniSR", dict(num_feat=16, res_num=1, block_num=1, up_scale=4, window_size=4),
             dict(up_scale=4)),
    ArchCase("SAFMN", SP + "SAFMN:SAFMN", dict(dim=16, n_blocks=2, upscaling_factor=4),
             dict(dim=36, upscaling_factor=4)),
    ArchCase("PLKSR", SP + "PLKSR:PLKSR", dict(dim=16, n_blocks=2, upscaling_factor=4), dict(upscaling_factor=4)),
    ArchCase("RealPLKSR", SP + "PLKSR:RealPLKSR", dict(dim=16, n_blocks=2, upscaling_factor=4),
             dict(upscaling_factor=4)),
    ArchCase("DITN_Real", SP + "DITN:DITN", dict(dim=24, ITL_blocks=1, SAL_blocks=1, UFONE_blocks=1, upscale=4),
             dict(upscale=4)),
    ArchCase("DnCNN (x1, gray)", SP + "DnCNN:DnCNN", dict(in_nc=1, out_nc=1, nc=16, nb=5), dict()),
    # not in CI: the rest of spandrel's single-image architectures, CI-sized where the class allows
    ArchCase("SCUNet (x1)", SP + "SCUNet:SCUNet", dict(dim=64, config=[1, 1, 1, 1, 1, 1, 1]), ci=False),
    ArchCase("HAT", SP + "HAT:HAT", dict(img_size=16, embed_dim=24, depths=[1], num_heads=[2], window_size=4,
                                         compress_ratio=3, squeeze_factor=8, upscale=2, upsampler="pixelshuffle",
                                         num_feat=16), ci=False),
    ArchCase("DAT", SP + "DAT:DAT", dict(img_size=16, embed_dim=32, split_size=[2, 4], depth=[1], num_heads=[2],
                                         expansion_factor=2.0, upscale=2), ci=False),
    ArchCase("RGT", SP + "RGT:RGT", dict(img_size=16, embed_dim=12, depth=[1], num_heads=[2], split_size=[4, 4],
                                         upscale=2), ci=False),
    ArchCase("Swin2SR", SP + "Swin2SR:Swin2SR", dict(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                                                     upscale=2, upsampler="pixelshuffledirect"), ci=False),
    ArchCase("GRL", SP + "GRL:GRL", dict(img_size=16, embed_dim=12, depths=[1], num_heads_window=[2],
                                         num_heads_stripe=[2], window_size=4, stripe_size=[4, 4],
                                         stripe_groups=[None, None], upscale=2, upsampler="pixelshuffledirect",
                                         mlp_ratio=2.0), ci=False),
    ArchCase("CRAFT", SP + "CRAFT:CRAFT", dict(window_size=4, embed_dim=12, depths=[1], num_heads=[2], split_size_0=2,
                                               split_size_1=4, upscale=2), ci=False),
    ArchCase("DRCT", SP + "DRCT:DRCT", dict(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                                            upscale=2, upsampler="pixelshuffle", gc=8), ci=False),
    ArchCase("DCTLSA", SP + "DCTLSA:DCTLSA", dict(nf=20, num_modules=6, upscale=2, num_head=5), ci=False),
    ArchCase("SeemoRe", SP + "SeemoRe:SeemoRe", dict(scale=2, embedding_dim=16, num_experts=2, num_layers=1), ci=False),
    ArchCase("MoSR", SP + "MoSR:MoSR", dict(upscale=2, n_block=1, dim=16), ci=False),
    ArchCase("MoESR", SP + "MoESR:MoESR", dict(scale=2, dim=16, n_blocks=1, n_block=1, upsample_dim=16), ci=False),
    ArchCase("FDAT", SP + "FDAT:FDAT", dict(scale=2, embed_dim=16, num_groups=1, depth_per_group=1, num_heads=2,
                                            window_size=4, mid_dim=16), ci=False),
    ArchCase("RCAN", SP + "RCAN:RCAN", dict(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4), ci=False),
    ArchCase("SwiftSRGAN", SP + "SwiftSRGAN:SwiftSRGAN", dict(num_channels=16, num_blocks=1, upscale_factor=2),
             ci=False),
    ArchCase("RealCUGAN (x2)", SP + "RealCUGAN.__arch.upcunet_v3:UpCunet2x", dict(in_channels=3, out_channels=3),
             ci=False),
    ArchCase("MMRealSR", SP + "MMRealSR:MMRealSR", dict(num_in_ch=3, num_out_ch=3, scale=4, num_feat=16, num_block=1,
                                                        num_grow_ch=8, num_feats=[8, 16, 32, 64]), ci=False),
    ArchCase("NAFNet (x1)", SP + "NAFNet:NAFNet", dict(width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]),
             ci=False),
    ArchCase("KBNet (x1)", SP + "KBNet.__arch.kbnet_s:KBNet_s", dict(width=16, middle_blk_num=1,
                                                                    enc_blk_nums=[1, 1, 1, 1],
                                                                    dec_blk_nums=[1, 1, 1, 1]), ci=False),
    ArchCase("Uformer (x1)", SP + "Uformer:Uformer", dict(img_size=128, embed_dim=8, depths=[1] * 9, num_heads=[1] * 9,
                                                          win_size=8), ci=False),
    ArchCase("FFTformer (x1)", SP + "FFTformer:FFTformer", dict(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1),
             ci=False),
    ArchCase("DRUNet (x1)", SP + "DRUNet:DRUNet", dict(in_nc=4, out_nc=3, nc=[8, 16, 32, 64], nb=4), ci=False),
    ArchCase("SAFMNBCIE (x1)", SP + "SAFMNBCIE:SAFMNBCIE", dict(dim=16, n_blocks=1, num_layers=1, upscaling_factor=2),
             ci=False),
    ArchCase("RetinexFormer (x1)", SP + "RetinexFormer:RetinexFormer", dict(n_feat=8, stage=1, num_blocks=[1, 1, 1]),
             ci=False),
    ArchCase("MixDehazeNet (x1)", SP + "MixDehazeNet:MixDehazeNet", dict(embed_dims=[8, 16, 32, 16, 8],
                                                                         depths=[1, 1, 1, 1, 1]), ci=False),
    ArchCase("HVI-CIDNet (x1)", SP + "HVICIDNet:HVICIDNet", dict(channels=[8, 8, 16, 32], heads=[1, 2, 4, 8]),
             ci=False),
]
"""The CI cases cover the issue's list; ``ci=False`` ones run only in this script (slower)."""


def seeded(case: ArchCase, seed: int = 0, default_size: bool = False) -> torch.nn.Module:
    """``case``'s module with weights drawn from ``seed`` (each class's own initialisation)."""
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # notes of the arch code about torch APIs (meshgrid indexing, ...)
        torch.manual_seed(seed)
        return case.build(default_size).eval()


def save_state_dict(module: torch.nn.Module, path: Path) -> Path:
    """The module's state dict as ``path`` (``.safetensors`` or a torch ``.pth``)."""
    state = {key: value.detach().contiguous() for key, value in module.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


def test_image(channels: int = 3) -> torch.Tensor:
    """A seeded smooth-plus-noise image (1, channels, 37, 53) in [0, 1]."""
    generator = torch.Generator().manual_seed(7)
    coarse = torch.rand(1, channels, 6, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=IMAGE_HW, mode="bicubic", align_corners=False)
    return (0.85 * smooth + 0.15 * torch.rand(1, channels, *IMAGE_HW, generator=generator)).clamp(0, 1)


def spandrel_reference(state: dict, x: torch.Tensor) -> torch.Tensor | None:
    """spandrel's own output for ``state`` on ``x`` (its call API clamps to [0, 1]), or None if it does not load it."""
    import spandrel

    try:
        loaded = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loaded(x.clone())


def calibration_folder(folder: Path) -> Path:
    """Two seeded RGB images (48x48) to calibrate INT8 on."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(2):
        cv2.imwrite(str(folder / f"calib{index}.png"), (rng.random((48, 48, 3)) * 255).astype(np.uint8))
    return folder


def timed(record: dict, key: str, step: Callable[[], Any]) -> Any:
    begin = time.perf_counter()
    try:
        return step()
    finally:
        record["seconds"][key] = round(time.perf_counter() - begin, 2)


def check_export(loaded, x: torch.Tensor, workdir: Path, record: dict):
    """Step 3: the deploy graph (dynamic, else static at the native size), onnxruntime vs torch."""
    from esr.backends import create_backend
    from esr.backends.base import fit_input, input_size
    from esr.errors import EsrError
    from esr.export.graph import DynamicShapeError, build_deploy_graph
    from esr.loading import open_model

    descriptor = loaded.descriptor
    try:
        graph = build_deploy_graph(loaded)
        record["onnx"] = "dynamic"
    except DynamicShapeError as err:
        record["onnx_note"] = str(err).split(": ", 1)[1]
        height, width = input_size(descriptor.replace(pads_inside=False), *IMAGE_HW)
        try:
            graph = build_deploy_graph(loaded, shape=(1, descriptor.in_channels, height, width))
        except EsrError as static_err:
            record.update(onnx="fails", onnx_note=str(static_err).split(": ", 1)[1])
            return None
        record["onnx"] = f"static {height}x{width}"
    except EsrError as err:
        record.update(onnx="fails", onnx_note=str(err).split(": ", 1)[1])
        return None
    path = graph.save(workdir / "model.onnx")
    backend = create_backend("onnxruntime", open_model(path))
    fitted = fit_input(x, backend.descriptor, backend.max_hw)  # what the graph gets: both sides see it
    with torch.no_grad():
        expected = loaded.module(fitted)
    record["parity_max_abs"] = float((backend(fitted) - expected).abs().max())
    record["output_max_abs"] = float(expected.abs().max())
    record["onnx_ops"] = len(graph.model.graph.node)
    return graph


def check_quantize(graph, workdir: Path, record: dict) -> None:
    """Step 4: INT8 QDQ graph from the fp32 deploy graph, calibrated on two crops."""
    from esr.errors import EsrError
    from esr.quantize.pipeline import QuantConfig, quantize_onnx

    config = QuantConfig(num_calib=2, crop_size=max(32, graph.descriptor.min_size), num_sensitivity=1)
    try:
        _, report = quantize_onnx(graph.model, str(calibration_folder(workdir / "calib")), config, progress=False,
                                  descriptor=graph.descriptor)
    except EsrError as err:
        record.update(quantize="fails", quantize_note=str(err))
        return
    psnr = report["output_psnr_vs_fp32_db"]
    int8 = sum(unit["int8"] for unit in report["units"])
    record.update(quantize="int8", int8_layers=f"{int8}/{len(report['units'])}",
                  int8_psnr_db=round(psnr, 1) if math.isfinite(psnr) else psnr)


def check_case(case: ArchCase, workdir: Path) -> dict:
    """Run ``case`` through esr end to end (module docstring); one JSON-able record."""
    from esr.backends import create_backend
    from esr.channels import to_channels
    from esr.complexity import count_params
    from esr.errors import EsrError
    from esr.loading import LoadedModel, load_model
    from esr.upscaler import Upscaler

    workdir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"case": case.name, "source": case.source.split(":")[0].split(".")[-1] + ":" +
                              case.source.split(":")[1], "seconds": {}}
    net = seeded(case)
    path = save_state_dict(net, workdir / f"model{case.suffix}")
    try:
        model = timed(record, "load", lambda: load_model(path))
    except EsrError as err:
        record.update(load="refused", load_note=str(err).split(": ", 1)[1])
        return record
    record["load"] = "ok"
    d = model.descriptor
    record.update(file=case.suffix, loader=d.source.rsplit("loader: ", 1)[-1].rstrip(")"), arch=d.arch,
                  scale=d.scale, channels=f"{d.in_channels}->{d.out_channels}", purpose=d.purpose,
                  min_size=d.min_size, size_multiple=d.size_multiple, square=d.square, tiling=d.tiling,
                  params=count_params(model))
    x = to_channels(test_image(), d.in_channels)
    reference = spandrel_reference(net.state_dict(), x)
    with torch.no_grad():
        ours = model(x)
    record["vs_spandrel_max_abs"] = None if reference is None else float((ours.clamp(0, 1) - reference).abs().max())

    rgb = (test_image()[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    loaded = LoadedModel.from_module(model)
    upscaled = timed(record, "upscale", lambda: Upscaler(create_backend("torch", loaded)).upscale_array(rgb))
    record["upscaled"] = "x".join(map(str, upscaled.shape))

    graph = timed(record, "export", lambda: check_export(loaded, x, workdir, record))
    if graph is None:
        record["quantize"] = "no graph"
    else:
        timed(record, "quantize", lambda: check_quantize(graph, workdir, record))
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(REPO)})")
    parser.add_argument("--case", action="append", default=None, help="run only these cases (printed, not saved)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if args.case is None or c.name in args.case]
    if not cases:
        parser.error(f"no case named {args.case} (known: {', '.join(c.name for c in CASES)})")
    records = []
    with tempfile.TemporaryDirectory(prefix="esr-archs-") as tmp:
        for index, case in enumerate(cases):
            record = check_case(case, Path(tmp) / str(index))
            record["ci"] = case.ci
            records.append(record)
            print(json.dumps(record), flush=True)
    if args.case is None:
        from esr.bench import machine_info
        from esr.fileio import write_output_bytes

        import spandrel

        result = {"spandrel": spandrel.__version__, "torch": torch.__version__, "image": list(IMAGE_HW),
                  "machine": machine_info(), "archs": records}
        write_output_bytes(Path(args.out), (json.dumps(result, indent=1) + "\n").encode(), overwrite=True)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
