"""Sampling over several processes (GPUs or CPU workers): ``accelerate launch -m plaid.cli sample ...``,
``torchrun ... -m plaid.cli sample ...`` or ``plaid sample --num-processes N``.

Every sample already has a fixed id and seed (:func:`plaid.sampling.run.sample_seed`), and the HF backend draws each
row from its own seed, so a sample's text does not depend on which process drew it. Each rank therefore plans the
whole run from the records in ``--out``, takes a disjoint share of the samples still missing, and appends its
records to its own shard, ``<out>.shards/rank<r>.jsonl``. When every rank is done, rank 0 merges the shards into
``--out`` (records already there are skipped) and removes them. A run killed at any point leaves ``--out`` plus
shards; the next run (with any number of processes) merges them into ``--out`` first, then plans again, so no
sample is lost or duplicated.

The share: with plain requests, the missing samples in plan order are dealt round-robin over the ranks; a request
that re-plans after each batch (a Z scan, ``--until-parsed``) belongs whole to one rank (requests dealt
round-robin), since its next samples depend on its own results.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from ..io import JsonlWriter, read_jsonl

log = logging.getLogger(__name__)

WAIT_TIMEOUT = timedelta(days=2)  # ranks finish at different times; a barrier must outwait the slowest


@dataclass(frozen=True)
class Rank:
    """This process's place in a multi-process run (``rank`` of ``world``; ``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Rank:
        """From the variables torchrun and ``accelerate launch`` set (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        if not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is not in [0, WORLD_SIZE={world})")
        return cls(rank, world, local)


def init_process_group(rank: Rank) -> None:
    """A gloo group for the barriers and the summary (no tensors travel: GPUs need no NCCL here)."""
    if rank.world == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=rank.rank, world_size=rank.world, timeout=WAIT_TIMEOUT)


def barrier(rank: Rank) -> None:
    if rank.world > 1:
        import torch.distributed as dist

        dist.barrier()


def gather(rank: Rank, obj) -> list:
    """``obj`` of every rank, in rank order (``[obj]`` in a single process)."""
    if rank.world == 1:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * rank.world
    dist.all_gather_object(out, obj)
    return out


def shard_dir(out: str | Path) -> Path:
    return Path(str(out) + ".shards")


def shard_path(out: str | Path, rank: Rank) -> Path:
    return shard_dir(out) / f"rank{rank.rank}.jsonl"


def read_with_shards(out: str | Path) -> list[dict]:
    """The records of ``out`` and of any shards a killed multi-process run left beside it (first copy of an id)."""
    records, seen = [], set()
    paths = [Path(out), *sorted(shard_dir(out).glob("rank*.jsonl"))] if shard_dir(out).is_dir() else [Path(out)]
    for path in paths:
        for rec in read_jsonl(path):
            if rec.get("sample_id") not in seen:
                seen.add(rec.get("sample_id"))
                records.append(rec)
    return records


def merge_shards(out: str | Path, sort_key=None) -> int:
    """Append the shards' records that ``out`` lacks to ``out`` (sorted by ``sort_key(record)`` where given), then
    remove the shards. Safe to kill: a re-run merges again and skips what is already in ``out``."""
    folder = shard_dir(out)
    if not folder.is_dir():
        return 0
    shards = sorted(folder.glob("rank*.jsonl"))
    records = [rec for path in shards for rec in read_jsonl(path)]
    if sort_key is not None:
        records.sort(key=sort_key)
    with JsonlWriter(out, key="sample_id") as writer:
        written = writer.write_many(records)
    for path in shards:
        path.unlink()
    folder.rmdir()
    return written


def launch(argv: list[str], num_processes: int) -> int:
    """Run ``plaid <argv>`` in ``num_processes`` processes on this machine (torchrun, standalone rendezvous); the
    exit code is the first non-zero one of the ranks (torchrun stops the others when one fails)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={num_processes}",
           "-m", "plaid.cli", *argv]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run(cmd, env=env, check=False).returncode


def strip_option(argv: list[str], option: str) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out
