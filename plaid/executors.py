"""Where per-item work runs: in this process, in local worker processes (``-j N``), or on a Ray cluster.

Every per-structure stage (evaluation checks, fingerprints, matching buckets, CSP matching, relaxation) hands its
tasks to an executor's :meth:`Executor.imap_unordered` and writes each result to its resumable JSONL as it comes
back, in the driver. The work function is the same whatever runs it, so a stage has one implementation and a Ray
run gives the records of a local run. A task lost with its worker is resubmitted by Ray (``max_retries``); a
task still running when the driver dies is simply not in the output file yet and is redone on the next run.

``n_jobs`` arguments across plaid take an ``int`` (local processes) or an :class:`Executor`; :func:`as_executor`
turns one into the other.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


def _call(args):
    fn, payload = args
    return fn(payload)


def _call_two(fn, payload):
    return fn(payload)


class Executor:
    """Runs ``fn(payload)`` for many payloads; results come back in completion order."""

    name = "local"
    workers = 1

    def imap_unordered(self, fn: Callable[[Any], Any], payloads: Iterable[Any], gpus: float = 0.0) -> Iterator[Any]:
        """``fn(payload)`` for every payload, as each finishes; ``gpus``: GPUs each task needs (a cluster's
        scheduler places it on a node that has them; local processes share this machine's)."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"executor": self.name, "workers": self.workers}


class LocalExecutor(Executor):
    """In this process (``n_jobs <= 1``) or in a fork pool of ``n_jobs`` worker processes."""

    name = "local"

    def __init__(self, n_jobs: int = 1):
        self.workers = max(1, int(n_jobs))

    def imap_unordered(self, fn, payloads, gpus: float = 0.0):
        payloads = list(payloads)
        if self.workers > 1 and len(payloads) > 1:
            with multiprocessing.get_context("fork").Pool(min(self.workers, len(payloads))) as pool:
                yield from pool.imap_unordered(_call, [(fn, p) for p in payloads], chunksize=1)
        else:
            for p in payloads:
                yield fn(p)


class RayExecutor(Executor):
    """Tasks on a Ray cluster: ``address`` of a running one (``ray start --head``, KubeRay), else a local Ray
    started with ``num_cpus`` (default: all cores). If Ray is already initialised in this process, that session
    is used as it is.

    Each payload is one task (``num_cpus`` and ``num_gpus`` per task: ``task_cpus``, ``task_gpus``); at most
    ``max_in_flight`` tasks are queued at once (default: twice the cluster's CPUs), so a long stage does not put
    every payload in the object store up front. A task whose worker process dies is retried up to
    ``max_retries`` times by Ray; an exception raised by ``fn`` itself is not retried (stage functions return
    their per-item failures as fields)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, task_cpus: float = 1.0,
                 task_gpus: float = 0.0, max_retries: int = 3, max_in_flight: int | None = None):
        try:
            import ray
        except ImportError:
            raise ImportError("--executor ray needs Ray: pip install 'plaid[ray]'") from None
        self._ray = ray
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
            ray.init(**kwargs, log_to_driver=False)
        self.address = address
        self.task_cpus, self.task_gpus = float(task_cpus), float(task_gpus)
        self.max_retries = int(max_retries)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, int(cpus // max(self.task_cpus, 1e-9)))
        self.max_in_flight = max_in_flight or 2 * self.workers
        self._remote = ray.remote(_call_two)

    def imap_unordered(self, fn, payloads, gpus: float = 0.0):
        ray = self._ray
        fn_ref = ray.put(fn)
        remote = self._remote.options(num_cpus=self.task_cpus, num_gpus=max(float(gpus), self.task_gpus),
                                      max_retries=self.max_retries, retry_exceptions=False)
        pending: list = []
        it = iter(payloads)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    payload = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(remote.remote(fn_ref, payload))  # Ray resolves fn_ref in the task
            if not pending:
                return
            done, pending = ray.wait(pending, num_returns=1)
            # ray.get hands numpy arrays back as read-only views of its object store; results are used (and
            # written to, e.g. by pymatgen's corrections) as plain objects, so each is copied once
            yield copy.deepcopy(ray.get(done[0]))

    def describe(self) -> dict:
        return {"executor": "ray", "workers": self.workers, "address": self.address or "local",
                "task_cpus": self.task_cpus, "task_gpus": self.task_gpus, "max_retries": self.max_retries}


def as_executor(n_jobs: int | Executor | None) -> Executor:
    """An :class:`Executor` for an ``n_jobs`` argument (an int: local processes)."""
    if isinstance(n_jobs, Executor):
        return n_jobs
    return LocalExecutor(int(n_jobs or 1))


def make_executor(kind: str = "local", n_jobs: int = 1, ray_address: str | None = None,
                  task_gpus: float = 0.0) -> Executor:
    """The executor a command's ``--executor``/``-j``/``--ray-address`` ask for (``n_jobs``: local worker
    processes, or with a local Ray the number of CPUs it starts with; ignored with ``ray_address``)."""
    if kind == "local":
        if ray_address:
            raise ValueError("--ray-address needs --executor ray")
        return LocalExecutor(n_jobs)
    if kind == "ray":
        return RayExecutor(address=ray_address, num_cpus=n_jobs if n_jobs and n_jobs > 1 else None,
                           task_gpus=task_gpus)
    raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")


def add_executor_arguments(parser, jobs: bool = True) -> None:
    """``--executor``, ``--ray-address`` (and ``-j/--jobs`` unless the command has it already)."""
    if jobs:
        parser.add_argument("-j", "--jobs", type=int, default=1,
                            help="local worker processes (with a local Ray: the CPUs it starts with)")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="where per-structure work runs: local processes (-j) or a Ray cluster")
    parser.add_argument("--ray-address", default=None,
                        help="with --executor ray: address of a running cluster (e.g. ray://head:10001 or auto); "
                             "default: start Ray on this machine")


def require_executor(args) -> None:
    """Usage errors of ``--executor``/``--ray-address``, before anything runs (exit 2)."""
    from importlib.util import find_spec

    from .errors import UsageError

    if getattr(args, "ray_address", None) and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    if args.executor == "ray" and find_spec("ray") is None:
        raise UsageError("--executor ray needs Ray: pip install 'plaid[ray]' (or use --executor local)")
