"""Monte Carlo tree search over token sequences, as CrystaLLM describes it (Antunes et al., 2024, "MCTS decoding").

- A node holds the cumulative token context (the tokens generated after the prompt) and, under a grammar, the
  parse state that context leads to.
- Selection: from the root, while a node has no untried child and has children, go to the child with the highest
  PUCT value ``Q + c_puct * P * sqrt(N_parent) / (1 + N)`` (an unvisited child first).
- Expansion: a new node's children are the ``width`` most probable next tokens (the model's probabilities,
  renormalised over those ``width``; under a grammar only tokens the grammar allows). One untried child is added
  per iteration, chosen at random. When the most probable child has weight >= ``only_child_cutoff`` (0.99) it is
  the only child; with ``extend_only_child`` such tokens are appended to the child's context right away (no tree
  level and no rollout is spent on a near-certain token) until a real choice or the end of the text.
- Rollout: from the new node, sample to the end of the crystal text (top-k = ``width``, CrystaLLM's rollout).
- Evaluation and backup: the completion is decoded, validated and scored; the reward is added to every node on
  the path and their visit counts go up by one.

The language model and the scorer are behind two small interfaces (``Policy``, ``evaluate``), so this module is
plain Python and is tested with fake ones.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class TreeConfig:
    """CrystaLLM's MCTS settings (paper values; its ``bin/mcts.py`` defaults differ for width and c)."""

    iterations: int = 200  # simulations per prompt (CrystaLLM bin/mcts.py num_simulations)
    width: int = 5  # children per node and rollout top-k
    c_puct: float = 1.0
    only_child_cutoff: float = 0.99
    extend_only_child: bool = True
    rollouts: int = 1  # rollouts per iteration (their rewards are averaged)
    seed: int = 0

    def __post_init__(self):
        if self.iterations < 1:
            raise ValueError("MCTS iterations must be >= 1")
        if self.width < 1:
            raise ValueError("MCTS tree width must be >= 1")
        if self.c_puct < 0:
            raise ValueError("c_puct must be >= 0")
        if not 0 < self.only_child_cutoff <= 1:
            raise ValueError("only_child_cutoff must be in (0, 1]")
        if self.rollouts < 1:
            raise ValueError("rollouts must be >= 1")


@dataclass
class Child:
    token: int
    weight: float  # model probability renormalised over the candidates
    state: Any  # parse state after the token (None unconstrained)
    terminal: bool  # the text ends with this token (end of sequence, or the token budget is used up)


class Policy(Protocol):
    """What the search needs from a language model."""

    def children(self, context: tuple[int, ...], state, width: int) -> list[Child]:
        """The ``width`` most probable next tokens after ``context``, weights renormalised (one model call)."""

    def rollout(self, context: tuple[int, ...], state, width: int, seed: int) -> tuple[int, ...]:
        """``context`` sampled on to the end of the text (top-k = ``width``)."""


@dataclass
class Node:
    context: tuple[int, ...]
    state: Any
    prior: float = 1.0
    terminal: bool = False
    parent: Node | None = None
    depth: int = 0
    visits: int = 0
    value: float = 0.0  # sum of backed-up rewards
    children: list[Node] = field(default_factory=list)
    untried: list[tuple[tuple[int, ...], float, Any, bool]] = field(default_factory=list)

    def puct(self, c_puct: float) -> float:
        if self.visits == 0:
            return math.inf
        parent_visits = self.parent.visits if self.parent is not None else self.visits
        return self.value / self.visits + c_puct * self.prior * math.sqrt(parent_visits) / (1 + self.visits)


@dataclass
class Evaluation:
    """What the scorer says about one completion; ``reward`` is set by the search's reward function."""

    valid: bool
    score: float | None = None  # lower is better (energy per atom or E_hull, eV/atom)
    reason: str | None = None
    reward: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass
class Visit:
    """One rollout of one iteration."""

    iteration: int
    rollout: int
    tokens: tuple[int, ...]
    evaluation: Evaluation
    model_calls: int
    seconds: float
    seed: int


@dataclass
class SearchResult:
    visits: list[Visit]
    stats: dict


class Search:
    """One tree for one prompt. ``evaluate(tokens) -> Evaluation`` validates and scores a completion;
    ``reward(evaluation) -> float`` turns it into a reward (CrystaLLM's, see ``scoring.CrystaLLMReward``)."""

    def __init__(self, policy: Policy, evaluate: Callable, reward: Callable, config: TreeConfig,
                 root_state=None, calls: Callable[[], int] | None = None):
        self.policy = policy
        self.evaluate = evaluate
        self.reward = reward
        self.config = config
        self.rng = random.Random(config.seed)
        self.calls = calls or (lambda: 0)  # the policy's model-call counter
        self._calls_start = self.calls()
        self.root = Node((), root_state)
        self.n_nodes = 1
        self._expand(self.root)

    # ------------------------------------------------------------------------------------------ tree building
    def _expand(self, node: Node) -> None:
        """Fill ``node.untried`` with its candidate children (CrystaLLM's context-sensitive tree builder)."""
        if node.terminal:
            return
        cfg = self.config
        prefix: tuple[int, ...] = ()
        context, state = node.context, node.state
        while True:
            kids = self.policy.children(context, state, cfg.width)
            if not kids:  # nothing may follow (cannot happen under a grammar's budget invariant)
                node.terminal = not prefix
                if prefix:
                    node.untried = [(prefix, 1.0, state, True)]
                return
            top = kids[0]
            if top.weight >= cfg.only_child_cutoff:
                if not cfg.extend_only_child:
                    node.untried = [((top.token,), 1.0, top.state, top.terminal)]
                    return
                prefix += (top.token,)
                context, state = context + (top.token,), top.state
                if top.terminal:
                    node.untried = [(prefix, 1.0, state, True)]
                    return
                continue
            node.untried = [(prefix + (k.token,), k.weight, k.state, k.terminal) for k in kids]
            return

    def _add_child(self, node: Node) -> Node:
        index = self.rng.randrange(len(node.untried))
        tokens, weight, state, terminal = node.untried.pop(index)
        child = Node(node.context + tokens, state, weight, terminal, node, node.depth + 1)
        node.children.append(child)
        self.n_nodes += 1
        self._expand(child)
        return child

    def _select(self) -> Node:
        node = self.root
        while not node.untried and node.children:
            node = max(node.children, key=lambda c: c.puct(self.config.c_puct))  # first maximum, as CrystaLLM
        return node

    # ------------------------------------------------------------------------------------------------ search
    def run(self, seed_for: Callable[[int, int], int], deadline: float | None = None,
            on_visit: Callable[[Visit], None] | None = None) -> SearchResult:
        """``config.iterations`` iterations (fewer if ``time.monotonic()`` passes ``deadline``)."""
        visits: list[Visit] = []
        stopped = None
        for iteration in range(1, self.config.iterations + 1):
            if deadline is not None and time.monotonic() > deadline:
                stopped = f"time limit reached after {iteration - 1} iterations"
                break
            start, calls0 = time.perf_counter(), self.calls()
            node = self._select()
            if node.untried:
                node = self._add_child(node)
            rewards = []
            for r in range(self.config.rollouts):
                seed = seed_for(iteration, r)
                if node.terminal:
                    tokens = node.context
                else:
                    tokens = tuple(self.policy.rollout(node.context, node.state, self.config.width, seed))
                ev = self.evaluate(tokens)
                ev.reward = self.reward(ev)
                rewards.append(ev.reward)
                visit = Visit(iteration, r, tokens, ev, self.calls() - calls0, time.perf_counter() - start, seed)
                start, calls0 = time.perf_counter(), self.calls()
                visits.append(visit)
                if on_visit is not None:
                    on_visit(visit)
            value = sum(rewards) / len(rewards)
            while node is not None:
                node.visits += 1
                node.value += value
                node = node.parent
        return SearchResult(visits, self.stats(visits, stopped))

    def stats(self, visits: list[Visit], stopped: str | None = None) -> dict:
        depth, leaves, terminal, stack = 0, 0, 0, [self.root]
        while stack:
            node = stack.pop()
            depth = max(depth, node.depth)
            leaves += not node.children
            terminal += node.terminal
            stack.extend(node.children)
        texts = {v.tokens for v in visits}
        valid = [v for v in visits if v.evaluation.valid]
        best = min(valid, key=lambda v: v.evaluation.score, default=None)
        root_children = sorted(self.root.children, key=lambda c: -c.visits)
        return {
            "iterations": len({v.iteration for v in visits}),
            "rollouts": len(visits),
            "nodes": self.n_nodes,
            "max_depth": depth,
            "leaves": leaves,
            "terminal_nodes": terminal,
            "root_visits": self.root.visits,
            "root_children": len(self.root.children),
            "root_child_visits": [c.visits for c in root_children],
            "distinct_completions": len(texts),
            "valid_rollouts": len(valid),
            "model_calls": self.calls() - self._calls_start,  # root expansion included
            "best_score": best.evaluation.score if best else None,
            "best_iteration": best.iteration if best else None,
            "stopped": stopped,
        }
