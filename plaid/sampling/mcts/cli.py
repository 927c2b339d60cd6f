"""The ``--mcts`` options of ``plaid sample`` (every default is CrystaLLM's) and the run they start."""

from __future__ import annotations

import json
import sys


def add_arguments(parser) -> None:
    g = parser.add_argument_group("MCTS decoding (--mcts; CrystaLLM's values as defaults)")
    g.add_argument("--mcts", action="store_true", help="Monte Carlo tree search decoding with an energy model")
    g.add_argument("--mcts-iterations", type=int, default=200, help="simulations per prompt")
    g.add_argument("--mcts-width", type=int, default=5, help="children per node (top-k) and rollout top-k")
    g.add_argument("--mcts-c-puct", type=float, default=1.0, help="PUCT exploration constant")
    g.add_argument("--mcts-lambda", type=float, default=2.0, help="reward sharpness on the energy")
    g.add_argument("--mcts-only-child-cutoff", type=float, default=0.99,
                   help="a child this probable is the only one (and is appended without a rollout)")
    g.add_argument("--mcts-no-extend", action="store_true",
                   help="keep a near-certain only child as its own node (one rollout per such token)")
    g.add_argument("--mcts-rollouts", type=int, default=1, help="rollouts per iteration (rewards averaged)")
    g.add_argument("--mcts-invalid-reward", type=float, default=-1.0, help="reward of an invalid completion")
    g.add_argument("--mcts-validity", choices=("crystallm", "structural", "parsed"), default="crystallm",
                   help="crystallm: CDVAE structural + CrystaLLM's checks; structural: >= 0.5 A; parsed")
    g.add_argument("--mcts-energy", choices=("chgnet", "m3gnet"), default="chgnet", help="energy model")
    g.add_argument("--mcts-energy-model-path", help="weights directory (M3GNet; default: shared models)")
    g.add_argument("--mcts-relax-steps", type=int, default=0, help="FIRE steps before the energy (0: as decoded)")
    g.add_argument("--mcts-hull", help="score by E_hull on this hull (.pkl.gz / .json.gz) instead of E/atom")


def build(args, backend, config):
    """An ``MCTSSampler`` from the parsed arguments (the energy model is loaded here)."""
    from .run import MCTSConfig, MCTSSampler
    from .scoring import CompletionScorer, MLIPEnergy
    from .tree import TreeConfig

    tree = TreeConfig(iterations=args.mcts_iterations, width=args.mcts_width, c_puct=args.mcts_c_puct,
                      only_child_cutoff=args.mcts_only_child_cutoff, extend_only_child=not args.mcts_no_extend,
                      rollouts=args.mcts_rollouts)
    hull = None
    if args.mcts_hull:
        from plaid.hull import load_hull

        hull = load_hull(args.mcts_hull)
    energy = MLIPEnergy(args.mcts_energy, relax_steps=args.mcts_relax_steps, hull=hull,
                        model_path=args.mcts_energy_model_path, device=args.device or "cpu")
    scorer = CompletionScorer(config.representation, energy, validity=args.mcts_validity)
    return MCTSSampler(backend, config, MCTSConfig(tree, args.mcts_lambda, args.mcts_invalid_reward), scorer)


def check(args, requests) -> None:
    """Argument errors before any model is loaded (raises RequestError / ValueError)."""
    from ..requests import RequestError
    from .tree import TreeConfig

    if args.backend != "hf":
        raise RequestError("--mcts runs on the hf backend")
    if args.until_parsed:
        raise RequestError("--mcts runs a fixed number of iterations; drop --until-parsed")
    bad = [r.request_id for r in requests if r.task != "generate"]
    if bad:
        raise RequestError(f"--mcts searches generation prompts, not infill or Z-scan requests ({', '.join(bad)})")
    if args.mcts_relax_steps < 0:
        raise RequestError("--mcts-relax-steps must be >= 0")
    TreeConfig(iterations=args.mcts_iterations, width=args.mcts_width, c_puct=args.mcts_c_puct,
               only_child_cutoff=args.mcts_only_child_cutoff, rollouts=args.mcts_rollouts)


def run(args, backend, config, requests) -> int:
    from ..requests import RequestError

    sampler = build(args, backend, config)
    try:
        summary = sampler.run(requests, args.out, progress=not args.no_progress)
    except RequestError as exc:
        print(f"plaid sample: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in summary.items() if k != "settings"}, indent=2))
    return 0
