"""``plaid sample --mcts``: one tree search per request, written as ``plaid sample`` records plus the search's own.

Each rollout is one record (``sample_id`` ``<request>-<k>``, k = rollout number from 0) with every field of a
``plaid sample`` record and: ``decoding: "mcts"``, ``iteration`` (1-based), ``rollout``, ``first_iteration`` (the
iteration at which this text was first found), ``valid``, ``invalid_reason``, ``score``, ``energy_per_atom``,
``e_hull``, ``reward``, ``model_calls`` (forward passes this rollout cost, expansion included), ``best`` (the
first record of the lowest-score valid text of the request), ``rank`` (1 = best, over distinct valid texts) and
``tree`` (the request's final tree statistics and settings). A request's records are written when its search
ends (the ranks need the whole search); a re-run skips requests already written, and redoes one cut short by a
kill, with the same seeds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..generate import Generation, SamplingParams
from ..requests import RequestError, SampleRequest, prompt_for
from ..run import SampleConfig, Sampler, sample_seed
from .scoring import CompletionScorer, CrystaLLMReward
from .tree import Search, TreeConfig

logger = logging.getLogger(__name__)


@dataclass
class MCTSConfig:
    tree: TreeConfig = field(default_factory=TreeConfig)
    reward_lambda: float = 2.0
    invalid_reward: float = -1.0


@dataclass
class SearchOutput:
    records: list[dict]
    stats: dict


class MCTSSampler:
    """Runs CrystaLLM's MCTS for each request with ``backend`` (an ``HFBackend``) and ``scorer``."""

    def __init__(self, backend, config: SampleConfig, mcts: MCTSConfig, scorer: CompletionScorer):
        self.backend = backend
        self.config = config
        self.mcts = mcts
        self.scorer = scorer
        self.sampler = Sampler(backend, config)  # ids, prompts, seeds, grammars and records, as plaid sample

    def check(self, requests: Sequence[SampleRequest]) -> None:
        bad = [r.request_id for r in requests if r.task != "generate"]
        if bad:
            raise RequestError(f"--mcts searches generation prompts; not infill or Z-scan requests ({bad})")
        self.sampler.check(requests)

    # ----------------------------------------------------------------------------------------------- one search
    def search(self, request: SampleRequest, deadline: float | None = None, progress=None) -> SearchOutput:
        """Search one request's prompt (``request.conditions``); records in rollout order."""
        from .constraint import GrammarCursor
        from .model import LMPolicy

        self.check([request])
        cfg, tree_cfg = self.config, self.mcts.tree
        tok = self.backend.tokenizer
        prompt = prompt_for(request, cfg.representation, style=cfg.prompt_style)
        prompt_ids = tok(prompt)["input_ids"]
        max_new = cfg.max_new_tokens(request.task)
        cursor = None
        root_state = None
        if cfg.constrained:
            cursor = GrammarCursor(self.sampler.grammar(request, request.conditions), self.backend.trie)
            root_state = cursor.initial()
        policy = LMPolicy(self.backend.model, tok, prompt_ids, max_new, cfg.params.temperature, cursor)
        reward = CrystaLLMReward(self.mcts.reward_lambda, self.mcts.invalid_reward)

        def evaluate(tokens):
            return self.scorer.evaluate(policy.decode(tokens)[0], request.conditions)

        def seed_for(iteration: int, rollout: int) -> int:
            return sample_seed(cfg.seed, _sid(request, iteration, rollout, tree_cfg.rollouts))

        start = time.perf_counter()
        tree = Search(policy, evaluate, reward, TreeConfig(**{**asdict(tree_cfg), "seed": sample_seed(cfg.seed, f"{request.request_id}-tree")}),
                      root_state, calls=lambda: policy.calls)
        result = tree.run(seed_for, deadline, on_visit=progress)
        stats = {**result.stats, "wall_seconds": round(time.perf_counter() - start, 3),
                 "scorer_cache_hits": self.scorer.hits, "settings": self.describe()}
        params = SamplingParams(cfg.params.temperature, 1.0, tree_cfg.width, max_new)
        records, first_seen = [], {}
        for k, visit in enumerate(result.visits):
            text, finished = policy.decode(visit.tokens)
            item = self.sampler._item(request, k)
            gen = Generation(text, len(visit.tokens), finished)
            rec = self.sampler.record(item, gen, params, visit.seconds, 1)
            ev = visit.evaluation
            first_seen.setdefault(text, visit.iteration)
            rec.update(
                seed=visit.seed,
                decoding="mcts",
                iteration=visit.iteration,
                rollout=visit.rollout,
                first_iteration=first_seen[text],
                valid=ev.valid,
                invalid_reason=ev.reason,
                score=ev.score,
                energy_per_atom=ev.extra.get("energy_per_atom"),
                e_hull=ev.extra.get("e_hull"),
                reward=ev.reward,
                model_calls=visit.model_calls,
                best=False,
                rank=None,
            )
            records.append(rec)
        _rank(records)
        for rec in records:
            rec["tree"] = stats
        return SearchOutput(records, stats)

    def describe(self) -> dict:
        return {**asdict(self.mcts), "temperature": self.config.params.temperature,
                "constrained": self.config.constrained, "scorer": self.scorer.describe()}

    # ---------------------------------------------------------------------------------------------- whole run
    def run(self, requests: Sequence[SampleRequest], out: str | Path, progress: bool = True) -> dict:
        from tqdm.auto import tqdm

        from ...io import JsonlWriter, read_jsonl

        self.check(requests)
        writer = JsonlWriter(out, key="sample_id")
        per_request = self.mcts.tree.iterations * self.mcts.tree.rollouts
        done = {}
        for rec in writer.records:
            done.setdefault(rec.get("request_id"), []).append(rec)
        try:
            for req in requests:
                self._check_resume(req, done.get(req.request_id, []))
            start = time.perf_counter()
            searched = 0
            for req in requests:
                have = done.get(req.request_id, [])
                if have and (len(have) >= per_request or (have[0].get("tree") or {}).get("stopped")):
                    continue
                bar = tqdm(total=per_request, desc=f"mcts {req.request_id}", unit="rollout", disable=not progress)
                output = self.search(req, progress=lambda _visit, bar=bar: bar.update(1))
                bar.close()
                writer.write_many(output.records)
                searched += 1
                logger.info("mcts %s: %s", req.request_id, json.dumps({k: output.stats[k] for k in (
                    "valid_rollouts", "distinct_completions", "best_score", "best_iteration", "model_calls")}))
        finally:
            writer.close()
        summary = summarize_mcts(read_jsonl(out), requests)
        summary.update(searched_this_run=searched, wall_seconds=round(time.perf_counter() - start, 3),
                       settings=self.describe())
        Path(str(out) + ".summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _check_resume(self, req: SampleRequest, records: list[dict]) -> None:
        if not records:
            return
        rec = records[0]
        cfg = self.config
        expected = prompt_for(req, cfg.representation, style=cfg.prompt_style)
        settings = (rec.get("tree") or {}).get("settings")
        if (rec.get("prompt"), rec.get("run_seed"), rec.get("decoding")) != (expected, cfg.seed, "mcts") or (
            settings is not None and json.loads(json.dumps(settings)) != json.loads(json.dumps(self.describe()))
        ):
            raise RequestError(
                f"the output file already holds {rec['sample_id']} from a different request, seed or MCTS "
                f"setting; resume with the same arguments or write to another --out"
            )


def _sid(request: SampleRequest, iteration: int, rollout: int, rollouts: int) -> str:
    return f"{request.request_id}-{(iteration - 1) * rollouts + rollout:05d}"


def _rank(records: list[dict]) -> None:
    """``rank`` over distinct valid texts by score (ties: earlier first); ``best`` on the first record of rank 1."""
    firsts: dict[str, dict] = {}
    for rec in records:
        if rec["valid"] and rec["text"] not in firsts:
            firsts[rec["text"]] = rec
    ordered = sorted(firsts.values(), key=lambda r: (r["score"], r["iteration"]))
    ranks = {r["text"]: i for i, r in enumerate(ordered, start=1)}
    for rec in records:
        rec["rank"] = ranks.get(rec["text"]) if rec["valid"] else None
    if ordered:
        ordered[0]["best"] = True


def summarize_mcts(records: list[dict], requests: Sequence[SampleRequest]) -> dict:
    """Per request and overall: rollouts, validity rate, mean / min score, best iteration, model calls."""
    import math

    out: dict = {"requests": {}}
    total = valid = calls = 0
    for req in requests:
        mine = [r for r in records if r.get("request_id") == req.request_id]
        scores = [r["score"] for r in mine if r.get("valid") and r.get("score") is not None]
        best = next((r for r in mine if r.get("best")), None)
        out["requests"][req.request_id] = {
            "rollouts": len(mine),
            "valid": len(scores),
            "valid_rate": round(len(scores) / len(mine), 4) if mine else None,
            "mean_score": sum(scores) / len(scores) if scores else None,
            "min_score": min(scores) if scores else None,
            "best_sample_id": best["sample_id"] if best else None,
            "best_iteration": best["iteration"] if best else None,
            "model_calls": sum(r.get("model_calls") or 0 for r in mine),
        }
        total, valid = total + len(mine), valid + len(scores)
        calls += out["requests"][req.request_id]["model_calls"]
    out.update(rollouts=total, valid=valid, valid_rate=round(valid / total, 4) if total else None,
               model_calls=calls)
    finite = [v["min_score"] for v in out["requests"].values() if v["min_score"] is not None]
    out["mean_min_score"] = sum(finite) / len(finite) if finite and all(map(math.isfinite, finite)) else None
    return out
