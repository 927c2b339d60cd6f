"""The sampling loop: requests -> batches -> generations -> decoded records, appended to a resumable JSONL file.

Every sample has a deterministic id (``<request>-<k>``, ``<request>-z<Z>-<k>`` in a Z scan) and seed
(``sample_seed(seed, id)``), so a re-run with the same output file skips the ids already written and continues
with the same ids and seeds it would have used: no sample is duplicated or lost. Each record keeps the prompt, the
raw text, whether it decoded (with the decoder's error message if not), the structure as CIF and the generation
metadata; the summary reports attempts, parse rate and samples per second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..io import JsonlWriter, read_jsonl
from ..prompts import get_style
from ..representations import MASK, get
from .distributed import Rank, barrier, gather, merge_shards, shard_path
from .generate import DEFAULT_MAX_NEW_TOKENS, INFILL_MAX_NEW_TOKENS, SamplingParams
from .requests import Z_SCAN, RequestError, SampleRequest, prompt_for, zscan_conditions

logger = logging.getLogger(__name__)


def sample_seed(seed: int, sample_id: str) -> int:
    """The generator seed of one sample: a hash of (run seed, sample id), below 2**63."""
    digest = hashlib.sha256(f"{int(seed)}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class SampleConfig:
    representation: str = "wyckoff"
    prompt_style: str = "plaid"  # plaid.prompts.PROMPT_STYLES: the wording the model was trained on
    batch_size: int = 16
    seed: int = 0
    params: SamplingParams = field(default_factory=SamplingParams)
    constrained: bool = False
    until_parsed: int | None = None  # per request: resample until this many decoded
    max_attempts: int | None = None  # per request cap with until_parsed (default 10 x until_parsed)
    grammar_options: dict = field(default_factory=dict)
    zscan_valid: str = "structural"  # a Z-scan hit: "parsed" or "structural" (CDVAE: all distances >= 0.5 A)

    def max_new_tokens(self, task: str) -> int:
        if self.params.max_new_tokens is not None:
            return self.params.max_new_tokens
        return INFILL_MAX_NEW_TOKENS if task == "infill" else DEFAULT_MAX_NEW_TOKENS[self.representation]


@dataclass
class _Item:
    request: SampleRequest
    sample_id: str
    index: int
    conditions: dict
    prompt: str
    seed: int
    z: int | None = None
    grammar: object = None


def decode_sample(
    representation, request: SampleRequest, text: str, prefix: str = ""
) -> tuple[object | None, str | None, str]:
    """(structure or None, error or None, full crystal text) for one generated text; ``prefix`` is the part of the
    crystal text the prompt already holds (CrystaLLM's ``data_...`` prompts)."""
    from ..representations import DecodeError

    full = prefix + text
    if request.task == "infill":
        element = text.strip()
        from pymatgen.core import Element

        if not Element.is_valid_symbol(element):
            return None, f"infill answer {element!r} is not an element symbol", text
        full = request.masked_text.replace(MASK, element)
    try:
        return representation.decode(full), None, full
    except DecodeError as exc:
        return None, str(exc), full


class Sampler:
    """Runs requests through a backend into ``out`` (JSONL keyed by ``sample_id``)."""

    def __init__(self, backend, config: SampleConfig):
        self.backend = backend
        self.config = config
        self.representation = get(config.representation)
        self._grammars: dict = {}

    # ------------------------------------------------------------------------------------------ grammars
    def grammar(self, request: SampleRequest, conditions: dict):
        from .constrained import make_grammar

        key = (request.task, tuple(sorted(conditions.items())))
        if key not in self._grammars:
            self._grammars[key] = make_grammar(
                self.config.representation,
                conditions,
                task=request.task,
                **self._grammar_options(request.task),
            )
        return self._grammars[key]

    def _grammar_options(self, task: str) -> dict:
        if task == "infill":
            return {}
        rep = self.representation
        options = dict(
            length_decimals=getattr(rep, "length_decimals", 2),
            angle_decimals=getattr(rep, "angle_decimals", 2),
            coord_decimals=getattr(rep, "coord_decimals", 2),
        )
        options.update(self.config.grammar_options)
        return options

    def check(self, requests: Sequence[SampleRequest]) -> None:
        """Everything that can fail before generation: prompts, and with constraints each request's grammar."""
        errors = []
        for req in requests:
            try:
                if req.task == "zscan":
                    feasible = []
                    for z in Z_SCAN:
                        style = self.config.prompt_style
                        prompt_for(req, self.config.representation, zscan_conditions(req, z, style), style)
                        if self._zscan_feasible(req, z):
                            feasible.append(z)
                    if not feasible:
                        raise ValueError(
                            f"no Z in {Z_SCAN} gives a crystal satisfying {req.conditions} "
                            f"within max_new_tokens={self.config.max_new_tokens(req.task)}"
                        )
                else:
                    prompt_for(req, self.config.representation, style=self.config.prompt_style)
                    if self.config.constrained:
                        need = self.grammar(req, req.conditions).initial().u
                        budget = self.config.max_new_tokens(req.task)
                        if need > budget:
                            raise ValueError(
                                f"max_new_tokens={budget} is too small for constrained decoding (needs {need})"
                            )
            except ValueError as exc:
                errors.append(f"request {req.request_id}: {exc}")
        if errors:
            raise RequestError("\n".join(errors))

    def _zscan_feasible(self, req: SampleRequest, z: int) -> bool:
        """Unconstrained, every Z is tried; constrained, only those whose grammar fits the token budget."""
        if not self.config.constrained:
            return True
        try:
            need = self.grammar(req, zscan_conditions(req, z, self.config.prompt_style)).initial().u
        except ValueError:
            return False
        return need <= self.config.max_new_tokens(req.task)

    # ------------------------------------------------------------------------------------------ planning
    def _item(self, req: SampleRequest, k: int, z: int | None = None) -> _Item:
        if z is None:
            sid, conditions = f"{req.request_id}-{k:05d}", req.conditions
        else:
            sid, conditions = f"{req.request_id}-z{z}-{k:05d}", zscan_conditions(req, z, self.config.prompt_style)
        prompt = prompt_for(req, self.config.representation, conditions, self.config.prompt_style)
        grammar = None
        if self.config.constrained:
            grammar = self.grammar(req, conditions)
        return _Item(req, sid, k, conditions, prompt, sample_seed(self.config.seed, sid), z, grammar)

    def _pending(self, req: SampleRequest, records: list[dict]) -> list[_Item]:
        """The samples ``req`` still needs, given its records so far (empty: finished)."""
        cfg = self.config
        if req.task == "zscan":
            for z in Z_SCAN:
                if not self._zscan_feasible(req, z):
                    continue
                mine = [r for r in records if r.get("z") == z]
                if any(r.get("valid") for r in mine):
                    return []
                done = {r["index"] for r in mine}
                missing = [k for k in range(req.num_samples) if k not in done]
                if missing:
                    return [self._item(req, k, z) for k in missing]
            return []
        done = {r["index"] for r in records}
        if cfg.until_parsed:
            parsed = sum(bool(r["parsed"]) for r in records)
            cap = cfg.max_attempts or 10 * cfg.until_parsed
            want = min(cfg.until_parsed - parsed, cap - len(done))
            if want <= 0:
                return []
            out, k = [], 0
            while len(out) < want:
                if k not in done:
                    out.append(k)
                k += 1
            return [self._item(req, k) for k in out]
        return [self._item(req, k) for k in range(req.num_samples) if k not in done]

    # ------------------------------------------------------------------------------------------ running
    def run(self, requests: Sequence[SampleRequest], out: str | Path, progress: bool = True,
            rank: Rank | None = None) -> dict:
        """Sample every request into ``out``. With ``rank`` (one process of several, see
        :mod:`plaid.sampling.distributed`), this process draws its share into its shard and rank 0 merges the
        shards into ``out`` at the end; the summary (rank 0's) covers the whole file and every rank's counts."""
        from tqdm.auto import tqdm

        rank = rank or Rank()
        self.check(requests)
        cfg = self.config
        if rank.is_main:
            merge_shards(out)  # shards of a killed multi-process run are part of the output
        barrier(rank)
        by_request: dict[str, list[dict]] = {r.request_id: [] for r in requests}
        writer = JsonlWriter(out if rank.world == 1 else shard_path(out, rank), key="sample_id")
        existing = writer.records if rank.world == 1 else read_jsonl(out)
        for rec in existing:
            if rec.get("request_id") in by_request:
                by_request[rec["request_id"]].append(rec)
        try:
            self._check_resume(requests, by_request)
        except RequestError:
            writer.close()
            raise
        resumed = len(existing)
        owns = self._share(requests, by_request, rank)
        generated, gen_time = 0, 0.0
        grammar = {"grammar_seconds": 0.0, "checked": 0, "rejected": 0}  # the constraint's own cost
        measures_grammar = cfg.constrained and hasattr(self.backend, "last_constraint_checks")  # the HF backend
        start = time.perf_counter()
        bar = tqdm(desc="sampling" if rank.world == 1 else f"sampling (rank {rank.rank})", unit="sample",
                   disable=not progress)
        try:
            while True:
                items = [it for req in requests for it in self._pending(req, by_request[req.request_id])
                         if owns(it)]
                if not items:
                    break
                bar.total = generated + len(items)
                bar.refresh()
                # group by task so infill and generation budgets do not mix in one batch
                items.sort(key=lambda it: it.request.task == "infill")
                for batch in _batches(items, cfg.batch_size):
                    records, seconds = self._generate(batch)
                    gen_time += seconds
                    if measures_grammar:
                        checked, rejected = self.backend.last_constraint_checks
                        grammar["grammar_seconds"] += self.backend.last_constraint_seconds
                        grammar["checked"] += checked
                        grammar["rejected"] += rejected
                    for rec in records:
                        writer.write(rec)
                        by_request[rec["request_id"]].append(rec)
                    generated += len(records)
                    bar.update(len(records))
                    bar.set_postfix(parsed=f"{sum(r['parsed'] for r in records)}/{len(records)}")
                    if cfg.until_parsed or any(it.request.task == "zscan" for it in batch):
                        break  # re-plan: a request may be satisfied already
        finally:
            bar.close()
            writer.close()
        mine = {"rank": rank.rank, "generated": generated, "generation_seconds": round(gen_time, 3), **grammar}
        counts = gather(rank, mine)
        barrier(rank)
        if not rank.is_main:
            return mine
        position = {r.request_id: i for i, r in enumerate(requests)}
        merge_shards(out, sort_key=lambda r: (position.get(r.get("request_id"), len(position)),
                                              Z_SCAN.index(r["z"]) if r.get("z") in Z_SCAN else -1,
                                              r.get("index", 0)))
        generated = sum(c["generated"] for c in counts)
        summary = summarize(read_jsonl(out), requests, cfg)
        wall = time.perf_counter() - start
        summary.update(
            generated_this_run=generated,
            resumed_records=resumed,
            generation_seconds=round(gen_time, 3),
            wall_seconds=round(wall, 3),
            samples_per_second=round(generated / gen_time, 3) if gen_time > 0 else None,
        )
        if measures_grammar:  # this run's grammar work and sample-then-check rejections
            checked, rejected = sum(c["checked"] for c in counts), sum(c["rejected"] for c in counts)
            summary["grammar"] = {
                "seconds": round(sum(c["grammar_seconds"] for c in counts), 3),
                "sampled_tokens_checked": checked,
                "rejected_then_masked": rejected,
                "rejected_fraction": round(rejected / checked, 5) if checked else None,
            }
        if rank.world > 1:  # generation time is per process; throughput of the whole run is per wall second
            summary.update(processes=rank.world, per_rank=counts,
                           generation_seconds=round(sum(c["generation_seconds"] for c in counts), 3),
                           samples_per_second=round(generated / wall, 3) if wall > 0 else None)
        Path(str(out) + ".summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _share(self, requests: Sequence[SampleRequest], by_request: dict[str, list[dict]], rank: Rank):
        """Whether an item is this rank's to draw (always, in a single process): the samples missing now, in plan
        order, dealt round-robin; a request that re-plans as it goes (Z scan, until_parsed) whole to one rank."""
        if rank.world == 1:
            return lambda it: True
        adaptive = [r for r in requests if self.config.until_parsed or r.task == "zscan"]
        mine_requests = {r.request_id for i, r in enumerate(adaptive) if i % rank.world == rank.rank}
        plain = [it for r in requests if r.request_id not in {a.request_id for a in adaptive}
                 for it in self._pending(r, by_request[r.request_id])]
        plain.sort(key=lambda it: it.request.task == "infill")  # the order run() batches in
        mine_ids = {it.sample_id for i, it in enumerate(plain) if i % rank.world == rank.rank}
        return lambda it: it.request.request_id in mine_requests or it.sample_id in mine_ids

    def _check_resume(self, requests: Sequence[SampleRequest], by_request: dict[str, list[dict]]) -> None:
        """A file being resumed must hold the same requests, seed and representation, or ids would mean other
        samples: refuse rather than mix them."""
        cfg = self.config
        for req in requests:
            for rec in by_request[req.request_id]:
                conditions = (
                    zscan_conditions(req, rec["z"], cfg.prompt_style) if req.task == "zscan" and "z" in rec else req.conditions
                )
                expected = prompt_for(req, cfg.representation, conditions, cfg.prompt_style)
                if (rec.get("prompt"), rec.get("run_seed"), rec.get("representation")) != (
                    expected,
                    cfg.seed,
                    cfg.representation,
                ):
                    raise RequestError(
                        f"the output file already holds {rec['sample_id']} from a different request, seed or "
                        f"representation; resume with the same arguments or write to another --out"
                    )
                break  # one record per request is enough: ids of a request share its prompt

    def _generate(self, batch: list[_Item]) -> tuple[list[dict], float]:
        cfg = self.config
        task = batch[0].request.task
        params = SamplingParams(
            cfg.params.temperature, cfg.params.top_p, cfg.params.top_k, cfg.max_new_tokens(task)
        )
        grammars = [it.grammar for it in batch] if cfg.constrained else None
        start = time.perf_counter()
        gens = self.backend.generate([it.prompt for it in batch], [it.seed for it in batch], params, grammars)
        seconds = time.perf_counter() - start
        records = [self.record(it, gen, params, seconds, len(batch)) for it, gen in zip(batch, gens)]
        return records, seconds

    def record(self, it: _Item, gen, params: SamplingParams, seconds: float, batch_size: int) -> dict:
        """The JSONL record of one generation (``seconds``: the batch's generation time)."""
        cfg = self.config
        prefix = it.prompt if get_style(cfg.prompt_style).prompt_in_text and it.request.task != "infill" else ""
        structure, error, full = decode_sample(self.representation, it.request, gen.text, prefix)
        rec = {
            "sample_id": it.sample_id,
            "request_id": it.request.request_id,
            "index": it.index,
            "task": it.request.kind,
            "representation": cfg.representation,
            "prompt_style": cfg.prompt_style,
            "prompt": it.prompt,
            "conditions": it.conditions
            if it.request.task != "infill"
            else {"masked_text": it.request.masked_text},
            "text": gen.text,
            "parsed": structure is not None,
            "error": error,
            "lattice_snap": self.representation.lattice_snap(full),
            "cif": structure.to(fmt="cif") if structure is not None else None,
            "formula": structure.composition.reduced_formula if structure is not None else None,
            "num_sites": len(structure) if structure is not None else None,
            "seed": it.seed,
            "run_seed": cfg.seed,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "top_k": params.top_k,
            "max_new_tokens": params.max_new_tokens,
            "constrained": cfg.constrained,
            "num_tokens": gen.num_tokens,
            "finished": gen.finished,
            "gen_time_s": round(seconds / batch_size, 6),
            "batch_gen_time_s": round(seconds, 6),
            "batch_size": batch_size,
            "backend": getattr(self.backend, "name", "hf"),
            "model": getattr(self.backend, "model_path", None),
        }
        if it.request.material_id is not None:
            rec["material_id"] = it.request.material_id
        if gen.constraint_failed:
            rec["constraint_failed"] = True
        if it.z is not None:
            rec["z"] = it.z
            rec["valid"] = self._zscan_valid(structure)
        return rec

    def _zscan_valid(self, structure) -> bool:
        if structure is None:
            return False
        if self.config.zscan_valid == "parsed":
            return True
        from ..evaluation.validity import structural_validity

        return bool(structural_validity(structure)[0])


def _batches(items: list, size: int):
    """Consecutive batches that never mix infill with generation."""
    batch: list = []
    for it in items:
        if batch and (
            len(batch) == size or (batch[0].request.task == "infill") != (it.request.task == "infill")
        ):
            yield batch
            batch = []
        batch.append(it)
    if batch:
        yield batch


def summarize(
    records: list[dict], requests: Sequence[SampleRequest] | None = None, config: SampleConfig | None = None
) -> dict:
    """Attempts, parse rate and error counts over ``records`` (a whole output file)."""
    if requests is not None:
        ids = {r.request_id for r in requests}
        records = [r for r in records if r.get("request_id") in ids]
    attempts = len(records)
    parsed = sum(bool(r.get("parsed")) for r in records)
    errors = Counter(_error_kind(r["error"]) for r in records if r.get("error"))
    summary = {
        "attempts": attempts,
        "parsed": parsed,
        "parse_rate": round(parsed / attempts, 4) if attempts else None,
        "rejection_rate": round(1 - parsed / attempts, 4) if attempts else None,
        "finished_with_eos": sum(bool(r.get("finished")) for r in records),
        "constrained": config.constrained if config else None,
        "errors": dict(errors.most_common(10)),
    }
    if config is not None and config.until_parsed:
        per = Counter(r["request_id"] for r in records if r.get("parsed"))
        summary["until_parsed"] = {
            "target": config.until_parsed,
            "max_attempts": config.max_attempts or 10 * config.until_parsed,
            "requests_reaching_target": sum(per[r.request_id] >= config.until_parsed for r in requests or []),
            "requests": len(requests or []),
        }
    if requests is not None and any(r.task == "zscan" for r in requests):
        found = {}
        for req in requests:
            if req.task == "zscan":
                hits = [r for r in records if r["request_id"] == req.request_id and r.get("valid")]
                found[req.request_id] = min((r["z"] for r in hits), default=None)
        summary["zscan_z_found"] = found
        summary["zscan_valid"] = config.zscan_valid if config else None
    return summary


def _error_kind(message: str) -> str:
    """An error message with numbers and quoted values blanked, to count kinds of failure."""
    import re

    text = re.sub(r"'.*'", "'…'", message)  # greedy: quoted generated text may hold quotes itself
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text[:120]


def export_structures(
    records: list[dict], cif_dir: str | Path | None = None, extxyz: str | Path | None = None
) -> int:
    """Write every parsed record as ``<cif_dir>/<sample_id>.cif`` and/or one extxyz file (rewritten from the records,
    so a resumed run exports everything once). Returns how many structures were written."""
    from pymatgen.core import Structure

    parsed = [r for r in records if r.get("parsed") and r.get("cif")]
    if cif_dir is not None:
        cif_dir = Path(cif_dir)
        cif_dir.mkdir(parents=True, exist_ok=True)
        for r in parsed:
            (cif_dir / f"{r['sample_id']}.cif").write_text(r["cif"])
    if extxyz is not None:
        from ase.io import write
        from pymatgen.io.ase import AseAtomsAdaptor

        frames = []
        for r in parsed:
            atoms = AseAtomsAdaptor.get_atoms(Structure.from_str(r["cif"], fmt="cif"))
            atoms.info["sample_id"] = r["sample_id"]
            atoms.info["request_id"] = r["request_id"]
            frames.append(atoms)
        Path(extxyz).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(extxyz) + ".tmp")
        write(tmp, frames, format="extxyz")
        tmp.replace(extxyz)
    return len(parsed)
