"""``plaid serve``: the web app and JSON API for a trained model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="web app (Gradio) and JSON API (POST /api/generate) for a trained model",
        description=(
            "Serve a model: a page where a formula (optionally Z and a space group) gives crystal structures "
            "with a table, a 3D view and the CIF, and POST /api/generate on the same server. Without Z the "
            "server scans Z = 1, 2, 3, 4, 6, 8 (CrystaLLM's web app)."
        ),
    )
    p.add_argument("--model", required=True, help="adapter, merged or from-scratch model directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--representation",
        choices=("wyckoff", "coords", "cif"),
        help="default: the one the model was trained on (plaid_run.json), else wyckoff",
    )
    p.add_argument(
        "--relaxer",
        default="chgnet",
        choices=("chgnet", "m3gnet", "none"),
        help="energy model for energies and MCTS (none: no energies, no MCTS)",
    )
    p.add_argument(
        "--relax-steps", type=int, default=0, help="FIRE steps before the energy (0: as generated)"
    )
    p.add_argument("--hull", help="reference hull (.pkl.gz / .json.gz) for E_hull")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--max-samples", type=int, default=16, help="most structures per request")
    p.add_argument("--max-atoms", type=int, default=64, help="most atoms in a requested cell")
    p.add_argument("--max-new-tokens", type=int, help="default: the representation's")
    p.add_argument(
        "--time-limit", type=float, default=300.0, help="seconds per request (and longest queue wait)"
    )
    p.add_argument("--max-queue", type=int, default=8, help="requests waiting at most; more get HTTP 503")
    p.add_argument("--mcts-iterations", type=int, default=50, help="MCTS iterations per Z")
    p.add_argument(
        "--validity",
        choices=("crystallm", "structural", "parsed"),
        default="crystallm",
        help="what 'valid' means in the table and for the Z scan",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def model_representation(path: str | Path) -> str | None:
    """The representation a plaid run was trained on (``plaid_run.json``), if recorded."""
    record = Path(path) / "plaid_run.json"
    if not record.is_file():
        return None
    try:
        return json.loads(record.read_text()).get("plaid_args", {}).get("representation")
    except (ValueError, AttributeError):
        return None


def build_service(
    model, representation=None, relaxer="chgnet", relax_steps=0, hull=None, device=None, **options
):
    """Load the model (and energy model, hull) and return a ``GenerationService``."""
    from plaid.sampling import load_backend

    from ..prompts import DEFAULT_PROMPT_STYLE, trained_prompt_style
    from .service import GenerationService, ServeConfig

    config = ServeConfig(representation=representation or model_representation(model) or "wyckoff",
                         prompt_style=trained_prompt_style(model) or DEFAULT_PROMPT_STYLE, **options)
    backend = load_backend(model, "hf", device=device)
    energy = None
    if relaxer and relaxer != "none":
        from plaid.sampling.mcts import MLIPEnergy

        loaded_hull = None
        if hull:
            from plaid.hull import load_hull

            loaded_hull = load_hull(hull)
        energy = MLIPEnergy(relaxer, relax_steps=relax_steps, hull=loaded_hull, device=device or "cpu")
    return GenerationService(backend, config, energy)


def run(args) -> int:
    from ..cli_checks import require_hull, require_model_dir
    from ..errors import UsageError

    require_model_dir(args.model, "--model")
    if args.hull is not None:
        require_hull(args.hull)
    try:
        import gradio  # noqa: F401
        import uvicorn
    except ImportError:
        raise UsageError("plaid serve needs gradio and uvicorn: pip install 'plaid[app]'") from None
    from .web import build_app

    service = build_service(
        args.model,
        args.representation,
        args.relaxer,
        args.relax_steps,
        args.hull,
        args.device,
        max_samples=args.max_samples,
        max_atoms=args.max_atoms,
        max_new_tokens=args.max_new_tokens,
        time_limit_s=args.time_limit,
        max_queue=args.max_queue,
        mcts_iterations=args.mcts_iterations,
        validity=args.validity,
        seed=args.seed,
    )
    app = build_app(service)
    logger.info("serving %s on http://%s:%d (API: POST /api/generate)", args.model, args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
