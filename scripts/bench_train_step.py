"""Time one training step of each stage of two esr training documents, interleaved, to size a demo.

For every stage of ``--options`` and ``--reference`` (same number of stages), builds the stage's
``network_g`` and times forward + L1 backward + Adam step on a random batch of the stage's
``batch_size_per_gpu`` x 3 x (gt_size / scale)^2 (``train.channels_last`` honoured). Data
loading is not timed (it is the same for both documents). The configurations take turns step
by step (round-robin), so a change of machine load hits all of them alike; the script reports
the median step time of each and the ratio of each ``--options`` stage to the same stage of
``--reference``. A demo whose reference took R s/iteration on a given machine takes about
ratio x R there. Writes ``results/bench_train_step.json`` and prints it.

    python scripts/bench_train_step.py --options options/demo_span_x4.yml \
        --reference options/demo_rlfn_s_x4.yml [--steps 8] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parent.parent


def step_runner(opt: dict[str, Any]) -> Callable[[], None]:
    """A closure running one training step of ``opt``'s network at its training batch shape."""
    from esr.train.runner import build_network

    data, scale = opt["datasets"]["train"], int(opt["scale"])
    lr_side = int(data["gt_size"]) // scale
    batch = int(data["batch_size_per_gpu"])
    memory_format = torch.channels_last if opt["train"].get("channels_last") else torch.contiguous_format
    net = build_network(opt["network_g"]).train().to(memory_format=memory_format)
    optimiser = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    lq = torch.rand(batch, 3, lr_side, lr_side, generator=generator).contiguous(memory_format=memory_format)
    gt = torch.rand(batch, 3, lr_side * scale, lr_side * scale, generator=generator)

    def step() -> None:
        optimiser.zero_grad()
        torch.nn.functional.l1_loss(net(lq), gt).backward()
        optimiser.step()

    return step


def main() -> None:
    from esr.bench import machine_info
    from esr.fileio import write_bytes_atomically
    from esr.train.options import load_document, stage_options

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--options", type=Path, required=True)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per configuration (after 2 warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "bench_train_step.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    documents = {"options": args.options, "reference": args.reference}
    stages = {role: stage_options(load_document(path)) for role, path in documents.items()}
    if len(stages["options"]) != len(stages["reference"]):
        raise SystemExit("error: the two documents have different numbers of stages")
    configs = [(role, name, opt) for role in documents for name, opt in stages[role]]
    runners = [step_runner(opt) for _, _, opt in configs]
    for run in runners:  # warm-up
        run()
        run()
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(args.steps):
        for index, run in enumerate(runners):
            start = time.perf_counter()
            run()
            times[index].append(time.perf_counter() - start)

    rows = []
    for (role, name, opt), samples in zip(configs, times):
        data = opt["datasets"]["train"]
        rows.append({"document": str(documents[role]), "role": role, "stage": name,
                     "network": opt["network_g"], "batch": data["batch_size_per_gpu"], "gt_size": data["gt_size"],
                     "channels_last": bool(opt["train"].get("channels_last")),
                     "median_s": statistics.median(samples), "samples_s": samples})
    half = len(rows) // 2
    for own, ref in zip(rows[:half], rows[half:]):
        own["ratio_to_reference"] = own["median_s"] / ref["median_s"]
    result = {"machine": machine_info(), "steps": args.steps, "threads": args.threads, "rows": rows}
    write_bytes_atomically(args.out, json.dumps(result, indent=1).encode())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
