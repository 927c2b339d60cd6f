"""Which ``max(n)`` candidates each CSP target gets (``plaid benchmark csp``), written to ``samples.jsonl`` in
candidate order (``plaid.evaluation.csp`` scores the first n of each target in file order).

- plain (the default): ``max(n)`` independent samples per target, as CDVAE, DiffCSP and CrystaLLM draw them.
- ``first_greedy``: candidate 1 is the model's most likely text (greedy decoding under the same grammar); the
  rest are sampled at the configured temperature. n=1 then scores the mode, n=20 the mode plus 19 draws.
- ``distinct``: a target's candidates are pairwise different structures under the uniqueness matcher
  (``GEN_MATCHER``, CDVAE's StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5), which also ignores scale): a draw
  that matches one of its target's candidates so far is set aside and another is drawn, up to
  ``max_draws_per_candidate * max(n)`` draws per target. A draw that did not decode to a structure stays a
  candidate and uses its slot, as in the plain protocol: only duplicates are redrawn. A target whose budget runs
  out fills its last slots with its set-aside duplicates, in draw order.

Every draw is kept (``greedy.jsonl``, ``sampled.jsonl``) and each run resumes; each record in ``samples.jsonl``
says how it was drawn (``decoding``) and, with ``distinct``, how many duplicates of it were set aside.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

SAMPLES_FILE = "samples.jsonl"


def write_prompts(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


class _Classes:
    """A target's candidates so far and which draws duplicated them (uniqueness matcher, reduced cells)."""

    def __init__(self, matcher):
        self.matcher, self.candidates, self.duplicates, self._reps = matcher, [], [], []

    def add(self, record: dict) -> None:
        from ..evaluation.matching import _fit, _reduce
        from ..evaluation.samples import structure_from_record

        structure, _ = structure_from_record(record)
        if structure is None:  # not a structure: a candidate that uses its slot
            self.candidates.append(record)
            return
        reduced, _ = _reduce(structure)
        for i, rep in enumerate(self._reps):
            if rep is not None and _fit(self.matcher, rep, reduced):
                self.duplicates.append(record)
                self.candidates[i]["duplicates_set_aside"] = self.candidates[i].get("duplicates_set_aside", 0) + 1
                return
        self.candidates.append(record)
        self._reps += [None] * (len(self.candidates) - 1 - len(self._reps)) + [reduced]

    def chosen(self, k: int) -> list[dict]:
        return (self.candidates + self.duplicates)[:k]


def draw_candidates(model, prompts: list[dict], out: Path, cfg, representation: str, backend=None) -> dict:
    """Sample every target's candidates by ``cfg``'s protocol and write them to ``out/samples.jsonl``; the run
    summary (parse rate over every draw, generation time, draws per target)."""
    from ..io import dumps, read_jsonl
    from ..sampling.generate import load_backend
    from ..sampling.requests import read_prompt_file
    from .settings import run_sampling

    k = max(cfg.n_values)
    if not (cfg.first_greedy or cfg.distinct):
        summary = run_sampling(model, read_prompt_file(write_prompts(out / "prompts.csv", prompts)),
                               out / SAMPLES_FILE, cfg, representation, backend)
        return {**summary, "draws": k * len(prompts)}
    if backend is None:
        backend = load_backend(model, "hf", device=cfg.device)
    summaries: dict[str, list[dict]] = {}

    def draw(name: str, settings, counts: dict[str, int]) -> dict[str, list[dict]]:
        rows = [{**r, "num_samples": max(counts[r["id"]], 1)} for r in prompts]
        path = write_prompts(out / f"prompts_{name}.csv", rows)
        summaries.setdefault(name, []).append(
            run_sampling(model, read_prompt_file(path), out / f"{name}.jsonl", settings, representation, backend)
        )
        by_target: dict[str, list[dict]] = {r["id"]: [] for r in prompts}
        for rec in read_jsonl(out / f"{name}.jsonl"):
            if rec.get("request_id") in by_target and rec.get("index", 0) < counts[rec["request_id"]]:
                by_target[rec["request_id"]].append({**rec, "decoding": name})
        for recs in by_target.values():
            recs.sort(key=lambda r: r.get("index", 0))
        return by_target

    from ..evaluation.matching import GEN_MATCHER, make_matcher

    matcher = make_matcher(**GEN_MATCHER)
    classes = {r["id"]: _Classes(matcher) for r in prompts}
    slots = k
    if cfg.first_greedy:
        greedy = draw("greedy", replace(cfg, temperature=0.0, top_k=0, top_p=1.0), {r["id"]: 1 for r in prompts})
        for tid, recs in greedy.items():
            for rec in recs:
                classes[tid].add({**rec, "sample_id": f"{rec['request_id']}-greedy"})
        slots = k - 1
    draws = {r["id"]: slots for r in prompts}
    budget = max(slots, cfg.max_draws_per_candidate * k) if cfg.distinct else slots
    seen = {tid: 0 for tid in draws}
    while slots > 0:
        by_target = draw("sampled", cfg, draws)
        for tid, recs in by_target.items():
            for rec in recs[seen[tid]:]:
                if cfg.distinct:
                    classes[tid].add(rec)
                else:
                    classes[tid].candidates.append(rec)
            seen[tid] = len(recs)
        short = {tid: k - len(c.candidates) for tid, c in classes.items()
                 if len(c.candidates) < k and draws[tid] < budget}
        if not cfg.distinct or not short:
            break
        for tid, missing in short.items():  # at least double a target's draws each round: few rounds
            draws[tid] = min(budget, draws[tid] + max(2 * missing, draws[tid]))
    with open(out / SAMPLES_FILE, "w", encoding="utf-8") as fh:
        for row in prompts:
            for rec in classes[row["id"]].chosen(k):
                fh.write(dumps(rec) + "\n")
    whole = [runs[-1] for runs in summaries.values()]  # each file's last summary covers all its draws
    attempts = sum(s.get("attempts") or 0 for s in whole)
    parsed = sum(s.get("parsed") or 0 for s in whole)
    seconds = sum(s.get("generation_seconds") or 0 for runs in summaries.values() for s in runs)
    generated = sum(s.get("generated_this_run") or 0 for runs in summaries.values() for s in runs)
    n_draws = sum(draws.values()) + (len(prompts) if cfg.first_greedy else 0)
    return {
        "parse_rate": round(parsed / attempts, 4) if attempts else None,
        "generation_seconds": round(seconds, 3),
        "samples_per_second": round(generated / seconds, 3) if seconds > 0 else None,
        "draws": n_draws,
        "targets_short_of_distinct": sum(len(c.candidates) < k for c in classes.values()) if cfg.distinct else None,
    }
