"""`esr train --launcher pytorch` under torchrun (2 gloo ranks on CPU): identical weights, rank-0-only files,
a SIGKILL in stage 2 and a rerun that skips stage 1 and resumes stage 2 on both ranks; SLURM variable parsing.

Each rank runs through a small wrapper that records, with a Python audit hook and wrapped ``torch.save``,
every file it opens, writes, renames (to) or creates under ``experiments/``, and the digest of the weights it
holds at the end of each stage (an instrument of the test, independent of esr's own rank check).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from esr.errors import EsrError
from esr.loading import load_model, read_checkpoint
from esr.train.distributed import first_host, init_distributed, slurm_environment, state_digest
from test_train_smoke import smoke_options

STAGE2_ITERS = 120

WRAPPER = r'''
import json, os, sys
audit = open(os.path.join(os.environ["AUDIT_DIR"], f"rank{os.environ['RANK']}.jsonl"), "a", buffering=1)
watched = os.path.join(os.environ["AUDIT_ROOT"], "experiments")

def note(**record):
    audit.write(json.dumps(record) + "\n")

def under(path):
    try:
        return os.path.abspath(os.fsdecode(path)).startswith(watched)
    except TypeError:  # a file descriptor
        return False

def hook(event, args):
    if event == "open" and under(args[0]):
        mode, flags = args[1], args[2] or 0
        writes = any(c in mode for c in "wax+") if mode else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        note(op="write" if writes else "read", path=os.path.abspath(os.fsdecode(args[0])))
    elif event == "os.rename" and (under(args[0]) or under(args[1])):  # also os.replace
        note(op=event, path=os.path.abspath(os.fsdecode(args[1])))
    elif event in ("os.mkdir", "os.remove") and under(args[0]):
        note(op=event, path=os.path.abspath(os.fsdecode(args[0])))

note(pid=os.getpid())
sys.addaudithook(hook)

import torch
_save = torch.save
def save(obj, f, *args, **kwargs):
    if under(f):
        note(op="write", path=os.path.abspath(os.fsdecode(f)))
    return _save(obj, f, *args, **kwargs)
torch.save = save

from esr.train.distributed import state_digest
from esr.train.model import ESRModel
_model_save = ESRModel.save
def model_save(self, epoch, current_iter):
    _model_save(self, epoch, current_iter)
    if current_iter == -1:
        note(stage=self.opt["name"], digest=state_digest(self.get_bare_model(self.net_g).state_dict()))
ESRModel.save = model_save

from esr.cli import main
sys.exit(main(sys.argv[1:]))
'''


def ddp_options() -> dict:
    """The smoke-test RLFN, 32 px crops, 2 stages; stage 2 long enough to be killed once it saved a state."""
    options = smoke_options()
    options["name"] = "ddp"
    options["datasets"]["train"]["gt_size"] = 32
    options["logger"]["save_checkpoint_freq"] = 10
    options["train"]["total_iter"] = 6
    options["stages"][1]["train"]["total_iter"] = STAGE2_ITERS
    return options


def records(audit_dir: Path, rank: int) -> list[dict]:
    path = audit_dir / f"rank{rank}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def stop(pid: int) -> None:
    """SIGKILL ``pid`` (a process this test started) and wait until it is gone or a zombie."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.05)


def test_ddp_two_ranks_two_stages_killed_and_resumed(tmp_path: Path, shared: Path) -> None:
    opt_file = tmp_path / "ddp.yml"
    opt_file.write_text(yaml.safe_dump(ddp_options()))
    (tmp_path / "wrapper.py").write_text(WRAPPER)
    audit1, audit2 = tmp_path / "audit1", tmp_path / "audit2"
    audit1.mkdir(), audit2.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(tmp_path / "wrapper.py"), "train", "-opt", str(opt_file), "--launcher", "pytorch", "--threads", "1"]
    env = {**os.environ, "ESR_SHARED": str(shared), "OMP_NUM_THREADS": "1", "AUDIT_ROOT": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]))}
    exp = tmp_path / "experiments"
    stage1 = exp / "ddp" / "stage_stage1.pth"
    states2 = exp / "ddp_stage2" / "training_states"

    # Run 1: SIGKILL torchrun and both ranks once stage 1 is finished and stage 2 has saved a state.
    with open(tmp_path / "run1.log", "w") as log:
        proc = subprocess.Popen(command, cwd=tmp_path, env={**env, "AUDIT_DIR": str(audit1)},
                                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 150
        while not list(states2.glob("*.state")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        stop(proc.pid)
        proc.wait()
        for rank in (0, 1):
            stop(records(audit1, rank)[0]["pid"])
    run1_log = (tmp_path / "run1.log").read_text()
    assert stage1.is_file() and list(states2.glob("*.state")), run1_log[-3000:]
    assert not (exp / "ddp" / "stage_stage2.pth").exists(), "stage 2 finished before the kill"
    assert "stage stage1: batch 2 per process x 2 processes = global batch 4" in run1_log
    stage1_mtime = stage1.stat().st_mtime_ns

    # Run 2: the same command continues.
    done = subprocess.run(command, cwd=tmp_path, env={**env, "AUDIT_DIR": str(audit2)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert done.stdout.count("final weights:") == 1  # printed by rank 0 only

    run1 = {rank: records(audit1, rank) for rank in (0, 1)}
    run2 = {rank: records(audit2, rank) for rank in (0, 1)}

    def paths(recs: list[dict], *ops: str) -> list[str]:
        return [r["path"] for r in recs if r.get("op") in ops]

    # Only rank 0 wrote (the instrument sees rank 0's writes, so it would see rank 1's).
    for rank_records in (run1[0], run2[0]):
        written = paths(rank_records, "write", "os.rename")  # a renamed temp file: its final name
        assert any(re.search(r"models/net_g_\d+\.pth$", p) for p in written)
        assert any(p.endswith(".state") for p in written) and any(p.endswith(".log") for p in written)
    assert any(p.endswith("stage_stage1.pth") for p in paths(run1[0], "os.rename"))
    for rank_records in (run1[1], run2[1]):
        assert paths(rank_records, "write", "os.rename", "os.mkdir", "os.remove") == []
        assert paths(rank_records, "read")  # rank 1 did read the shared files

    # Stage 1 ran once (run 1, on both ranks) and was skipped by both ranks in run 2.
    for rank in (0, 1):
        assert any(p.endswith("stages/0_stage1.yml") for p in paths(run1[rank], "read"))
        assert not any(p.endswith("stages/0_stage1.yml") for p in paths(run2[rank], "read"))
        assert any(p.endswith("stages/1_stage2.yml") for p in paths(run2[rank], "read"))
    assert stage1.stat().st_mtime_ns == stage1_mtime
    assert len(list((exp / "ddp_stage1").glob("train_*.log"))) == 1

    # Both ranks resumed stage 2 from the same training state.
    resumed = {rank: [p for p in paths(run2[rank], "read") if p.endswith(".state")][-1] for rank in (0, 1)}
    assert resumed[0] == resumed[1]
    logs2 = sorted((exp / "ddp_stage2").glob("train_*.log"))
    assert len(logs2) == 2
    match = re.search(r"Resuming training from epoch: \d+, iter: (\d+)", logs2[1].read_text())
    assert match and int(match[1]) == int(Path(resumed[0]).stem) and 0 < int(match[1]) < STAGE2_ITERS

    # Both ranks held identical weights at the end of each stage: the exported ones.
    for stage, audit in (("stage1", run1), ("stage2", run2)):
        digests = [r["digest"] for rank in (0, 1) for r in audit[rank] if r.get("stage") == f"ddp_{stage}"]
        stored, _ = read_checkpoint(exp / "ddp" / f"stage_{stage}.pth")
        assert digests == [state_digest(stored)] * 2
    assert "identical on all 2 ranks" in logs2[1].read_text()

    final = load_model(exp / "ddp" / "final.pth")
    assert final(torch.rand(1, 3, 12, 12)).shape == (1, 3, 48, 48)
    assert [r["stage"] for r in json.loads((exp / "ddp" / "curve.json").read_text())] == ["stage1", "stage2"]


def test_slurm_variables_become_torch_distributed_ones() -> None:
    env = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODELIST": "gpu[03-04,07],cpu1"}
    assert slurm_environment(env, port=29611) == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu03", "MASTER_PORT": "29611"}
    given = slurm_environment({**env, "MASTER_ADDR": "head", "MASTER_PORT": "1234"})
    assert (given["MASTER_ADDR"], given["MASTER_PORT"]) == ("head", "1234")
    assert slurm_environment(env)["MASTER_PORT"] == "29500"
    assert [first_host(n) for n in ("node7", "a[1-3]", "x[009,011]-ib", "n1,n2")] == ["node7", "a1", "x009-ib", "n1"]
    with pytest.raises(EsrError, match="SLURM_NODELIST"):
        slurm_environment({k: v for k, v in env.items() if k != "SLURM_NODELIST"})


def test_launcher_pytorch_without_torchrun_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EsrError, match="start esr train with torchrun"):
        init_distributed("pytorch")
    assert init_distributed("none").world_size == 1
