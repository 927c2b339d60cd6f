"""``plaid sample``: draw crystals from a trained model into a resumable JSONL file."""

from __future__ import annotations

import json
import logging

from plaid.prompts import PROMPT_STYLES

logger = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="sample crystals from a trained model (unconditional, conditional, prompt file, Z scan, infill)",
        description=(
            "Sample crystal texts from a model (LoRA adapter, merged or from-scratch directory), decode each with "
            "the representation's decoder and append one record per sample to --out (JSONL). Re-running with the "
            "same --out resumes: samples already written are skipped, none is duplicated."
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        help="adapter, merged or from-scratch model directory; also a published PEFT adapter (adapter_config.json + "
        "adapter_model.safetensors) whose base is a Hub id in the Hugging Face cache",
    )
    p.add_argument(
        "--base-model",
        help="the adapter's base model directory (or Hub id), instead of the base_model_name_or_path its "
        "adapter_config.json records",
    )
    p.add_argument("--representation", default="wyckoff", choices=("wyckoff", "wyckoff-plaid", "coords", "cif"))
    p.add_argument(
        "--prompt-style",
        default=None,
        choices=tuple(PROMPT_STYLES),
        help="wording of the prompts (plaid.prompts); default: the style the model was trained with "
        "(plaid_run.json), else plaid",
    )
    p.add_argument("--num-samples", type=int, default=1, help="samples per request (per Z in a Z scan)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", required=True, help="output JSONL (appended; resumes)")
    p.add_argument(
        "--constrained", action="store_true", help="grammar-constrained decoding (wyckoff, coords, infill)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="0 = off")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="default: 512 wyckoff, 1024 coords, 2048 cif, 8 infill",
    )
    cond = p.add_argument_group("conditions (any subset; the training prompts' wording)")
    cond.add_argument("--formula", help="reduced formula, e.g. BaTiO3")
    cond.add_argument("--composition", help="cell composition, e.g. Ba2Ti2O6")
    cond.add_argument("--spacegroup", help="space group number or Hermann-Mauguin symbol")
    cond.add_argument("--z", type=int, help="formula units per cell")
    cond.add_argument("--formation-energy", type=float, help="eV/atom")
    cond.add_argument("--band-gap", type=float, help="eV")
    cond.add_argument("--e-hull", type=float, help="eV/atom")
    p.add_argument(
        "--prompt-file",
        help="CSV/JSONL of requests (columns: id, num_samples, conditions, masked_text, z_scan)",
    )
    p.add_argument(
        "--z-scan",
        action="store_true",
        help="with --formula: try Z = 1, 2, 3, 4, 6, 8 until a valid structure",
    )
    p.add_argument(
        "--zscan-valid",
        choices=("structural", "parsed"),
        default="structural",
        help="what stops a Z scan: CDVAE structural validity (default) or just decoding",
    )
    p.add_argument(
        "--infill", help="crystal text file (or CIF with --mask-element) to infill; [MASK] marks the element"
    )
    p.add_argument("--mask-element", help="with --infill: element of the structure/text to replace by [MASK]")
    p.add_argument("--until-parsed", type=int, help="resample until this many samples per request decode")
    p.add_argument(
        "--max-attempts", type=int, help="with --until-parsed: attempts cap per request (default 10x)"
    )
    p.add_argument("--max-atoms", type=int, default=256, help="constrained: most atoms in a cell")
    p.add_argument("--cif-dir", help="also write each parsed structure as <sample_id>.cif here")
    p.add_argument("--extxyz", help="also write all parsed structures to this extxyz file")
    p.add_argument("--backend", choices=("hf", "vllm"), default="hf")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter before sampling (faster)")
    p.add_argument(
        "--load-in-4bit", action="store_true", help="4-bit NF4 base (QLoRA inference; bitsandbytes on CUDA)"
    )
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float16", "float32"),
        help="weights dtype (the compute dtype with --load-in-4bit); default bfloat16 on CUDA, float32 on CPU",
    )
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--num-processes",
        type=int,
        default=1,
        help="sample in N processes on this machine (one per GPU, else CPU workers), each drawing a disjoint share "
        "of the samples into one --out; same as `torchrun --nproc-per-node N -m plaid.cli sample ...` or "
        "`accelerate launch --num_processes N -m plaid.cli sample ...`",
    )
    from .mcts.cli import add_arguments as add_mcts_arguments

    add_mcts_arguments(p)
    p.set_defaults(func=run)


def prompt_style(args) -> str:
    """--prompt-style, else the one the model was trained with (a different choice is logged), else plaid."""
    from ..prompts import DEFAULT_PROMPT_STYLE, trained_prompt_style

    trained = trained_prompt_style(args.model) if getattr(args, "model", None) else None
    style = getattr(args, "prompt_style", None)
    if style is None:
        return trained or DEFAULT_PROMPT_STYLE
    if trained is not None and trained != style:
        logger.warning("--prompt-style %s: the model was trained with prompt style %s", style, trained)
    return style


def build_requests(args, style: str | None = None):
    from pathlib import Path

    from ..representations import MASK, get
    from .requests import RequestError, make_request, read_prompt_file

    conditions = {
        "formula": args.formula,
        "composition": args.composition,
        "spacegroup": args.spacegroup,
        "z": args.z,
        "formation_energy": args.formation_energy,
        "band_gap": args.band_gap,
        "e_hull": args.e_hull,
    }
    given = {k: v for k, v in conditions.items() if v is not None}
    if args.prompt_file:
        if given or args.infill or args.z_scan:
            raise RequestError("--prompt-file holds the conditions; do not combine it with condition flags")
        return read_prompt_file(args.prompt_file, default_num_samples=args.num_samples, style=style)
    if args.infill:
        if given or args.z_scan:
            raise RequestError("--infill takes no conditions")
        path = Path(args.infill)
        if not path.is_file():
            raise RequestError(f"--infill file {path} does not exist")
        rep = get(args.representation)
        text = path.read_text()
        if path.suffix.lower() == ".cif":
            from pymatgen.core import Structure

            text = rep.encode(Structure.from_file(path))
        if args.mask_element:
            if args.mask_element not in rep.elements(text):
                raise RequestError(f"element {args.mask_element} is not in {path}")
            text = rep.mask_element(text, args.mask_element)
        if MASK not in text:
            raise RequestError(f"{path} holds no {MASK}; pass --mask-element")
        return [make_request("infill", num_samples=args.num_samples, masked_text=text, style=style)]
    if args.z_scan:
        return [make_request("zscan", given, args.num_samples, z_scan=True, style=style)]
    return [make_request("conditional" if given else "unconditional", given, args.num_samples, style=style)]


def _check_resume_settings(args, model: str) -> None:
    """Samples already in --out must come from the same model and sampling settings (the sampler itself checks
    prompts, seed and representation): mixing them would make one file describe two distributions."""
    from pathlib import Path

    from ..cli_checks import read_results
    from ..errors import UsageError
    from .distributed import read_with_shards, shard_dir

    if not Path(args.out).exists() and not shard_dir(args.out).is_dir():
        return
    records = read_results(args.out, "--out") if Path(args.out).exists() else []
    if shard_dir(args.out).is_dir():  # a killed multi-process run: its shards are part of the output
        records = read_with_shards(args.out)
    if not records:
        return
    first = records[0]
    wanted = {"temperature": args.temperature, "top_p": args.top_p, "top_k": args.top_k,
              "constrained": args.constrained}
    if args.max_new_tokens is not None:
        wanted["max_new_tokens"] = args.max_new_tokens
    differ = [f"{k} {first.get(k)!r} then, {v!r} now" for k, v in wanted.items() if k in first and first[k] != v]
    before = first.get("model")
    if before and Path(before).exists() and Path(model).exists() and Path(before).resolve() != Path(model).resolve():
        differ.append(f"model {before} then, {model} now")
    if differ:
        raise UsageError(f"--out: {args.out} holds samples made with other settings ({', '.join(differ)}); re-run "
                         "with the same settings to resume, or give another --out to start clean")


def run(args) -> int:
    from ..cli_checks import require_file, require_model_dir, require_writable_dir, require_writable_file
    from ..errors import NothingProducedError, UsageError
    from .distributed import Rank, init_process_group, launch, strip_option
    from .generate import SamplingParams, load_backend
    from .requests import RequestError
    from .run import SampleConfig, Sampler, export_structures

    rank = Rank.from_env()
    if args.num_processes < 1:
        raise UsageError(f"--num-processes must be >= 1, got {args.num_processes}")
    if (args.num_processes > 1 or rank.world > 1) and (args.mcts or args.backend == "vllm"):
        raise UsageError("several sampling processes work with the hf backend without --mcts (vLLM spreads over "
                         "GPUs itself: use its tensor parallelism)")
    if args.num_processes > 1 and rank.world > 1:
        raise UsageError("--num-processes starts the processes itself: drop it under accelerate launch / torchrun")
    if args.prompt_file is not None:
        require_file(args.prompt_file, "prompt file", "--prompt-file", "give a CSV/TSV/JSONL of requests")
    if args.infill is not None:
        require_file(args.infill, "structure to infill", "--infill", "give a crystal text file or a CIF")
    try:
        style = prompt_style(args)
        requests = build_requests(args, style)
        if not requests:
            raise RequestError(f"--prompt-file {args.prompt_file} holds no requests; nothing to sample")
        params = SamplingParams(args.temperature, args.top_p, args.top_k, args.max_new_tokens)
        if args.batch_size < 1:
            raise RequestError("--batch-size must be >= 1")
        if args.constrained and args.representation == "cif" and any(r.task != "infill" for r in requests):
            raise RequestError("--constrained is implemented for the wyckoff and coords representations")
        if args.merge and args.load_in_4bit:
            raise RequestError("--merge and --load-in-4bit exclude each other (a 4-bit base cannot be merged)")
        if args.load_in_4bit:
            from ..training.model import default_device

            if not str(args.device or default_device()).startswith("cuda"):
                raise RequestError("--load-in-4bit needs bitsandbytes on a CUDA device; on "
                                   f"{args.device or default_device()} load the base in bf16/fp32 (--dtype)")
        config = SampleConfig(
            representation=args.representation,
            prompt_style=style,
            batch_size=args.batch_size,
            seed=args.seed,
            params=params,
            constrained=args.constrained,
            until_parsed=args.until_parsed,
            max_attempts=args.max_attempts,
            grammar_options={"max_atoms": args.max_atoms},
            zscan_valid=args.zscan_valid,
        )
        if args.constrained and args.backend == "vllm":
            from .generate import check_vllm_constrained

            check_vllm_constrained()
        Sampler(None, config).check(requests)  # every request error before the model is even loaded
        if args.mcts:
            from .mcts.cli import check as check_mcts

            check_mcts(args, requests)
    except (RequestError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    require_writable_file(args.out, "--out")
    if args.cif_dir:
        require_writable_dir(args.cif_dir, "--cif-dir")
    if args.extxyz:
        require_writable_file(args.extxyz, "--extxyz")
    model = require_model_dir(args.model, "--model", base_model=args.base_model)
    if not args.mcts:  # MCTSSampler checks its own resume settings (tree, scorer, decoding)
        _check_resume_settings(args, model)
    if args.num_processes > 1:  # every check passed: start the ranks, each runs this command again
        return launch(strip_option(args.argv, "--num-processes"), args.num_processes)
    init_process_group(rank)
    device = args.device
    if device is None and rank.world > 1:
        import torch

        device = f"cuda:{rank.local_rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    try:
        backend = load_backend(
            model,
            args.backend,
            device=device,
            merge=args.merge,
            load_in_4bit=args.load_in_4bit,
            base_model=args.base_model,
            dtype=args.dtype,
        )
    except ImportError as exc:  # an optional backend that is not installed (vLLM, bitsandbytes)
        if args.backend == "hf" and not args.load_in_4bit:
            raise
        raise UsageError(f"--backend {args.backend}{' --load-in-4bit' if args.load_in_4bit else ''}: {exc}") from None
    if args.mcts:
        from .mcts.cli import run as run_mcts

        return run_mcts(args, backend, config, requests)
    sampler = Sampler(backend, config)
    try:
        summary = sampler.run(requests, args.out, progress=not args.no_progress, rank=rank)
    except RequestError as exc:
        raise UsageError(str(exc)) from None
    if not rank.is_main:
        return 0  # rank 0 merged the shards and reports for the whole run
    if args.cif_dir or args.extxyz:
        from ..io import read_jsonl

        summary["exported"] = export_structures(read_jsonl(args.out), args.cif_dir, args.extxyz)
    print(json.dumps(summary, indent=2))
    if not summary.get("attempts"):
        raise NothingProducedError(f"no sample was generated for the {len(requests)} request(s); see {args.out}.summary.json")
    return 0
