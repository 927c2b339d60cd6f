"""Convert models from other crystal-generation projects into Hugging Face models plaid loads (``plaid convert``).

CrystaLLM (Antunes et al. 2024) trains nanoGPT (GPT-2 blocks, pre-LayerNorm, exact-erf GELU, tied embeddings) and
saves ``ckpt.pt``: ``{"model_args": {n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout}, "model":
state_dict, ...}`` (keys prefixed ``_orig_mod.`` when trained with torch.compile). ``convert_crystallm`` writes a
``GPT2LMHeadModel`` (nanoGPT's ``nn.Linear`` weights transposed into Hugging Face's ``Conv1D``; a ``bias=False``
model gets zero biases, which computes the same function) and a ``PreTrainedTokenizerFast`` with CrystaLLM's
vocabulary, so ``plaid sample --model OUT --representation cif`` and ``load_for_inference(OUT)`` work.

CrystaLLM's vocabulary (its ``CIFTokenizer``): 89 element symbols, the digits, 26 CIF keywords, the symbols
``x y z . ( ) + - / ' , <space> <newline>``, one token per space-group symbol (suffixed ``_sg`` so ``Pm`` and
``P1`` differ from the atom ``Pm`` and ``P`` + ``1``; the suffix is only used after
``_symmetry_space_group_name_H-M`` and is removed on decoding), then ``<unk>``: 371 ids with its 232 space-group
symbols. The token ids must be CrystaLLM's exactly, so the vocabulary is read from CrystaLLM's own files: the
``meta.pkl`` written when its CIFs were tokenized (``itos``), or its ``crystallm/spacegroups.txt`` (the list is
then rebuilt in CrystaLLM's order). Runs of spaces/tabs collapse to one space, as CrystaLLM's tokenizer does.
CrystaLLM has no BOS/EOS token: generation starts from ``data_`` (or ``data_<formula>\\n``) and stops at
``max_new_tokens``; ``<unk>`` doubles as the pad token.
"""

from __future__ import annotations

import logging
import pickle
import re
from pathlib import Path

logger = logging.getLogger(__name__)

# CrystaLLM's token groups, in its id order (atoms first, then digits, keywords, symbols, space groups, <unk>).
CRYSTALLM_ATOMS = (
    "Si C Pb I Br Cl Eu O Fe Sb In S N U Mn Lu Se Tl Hf Ir Ca Ta Cr K Pm Mg Zn Cu Sn Ti B W P H Pd As Co Np Tc Hg "
    "Pu Al Tm Tb Ho Nb Ge Zr Cd V Sr Ni Rh Th Na Ru La Re Y Er Ce Pt Ga Li Cs F Ba Te Mo Gd Pr Bi Sc Ag Rb Dy Yb Nd "
    "Au Os Pa Sm Be Ac Xe Kr He Ne Ar"
).split()
CRYSTALLM_DIGITS = [str(d) for d in range(10)]
CRYSTALLM_KEYWORDS = (
    "_cell_length_b _atom_site_occupancy _atom_site_attached_hydrogens _cell_length_a _cell_angle_beta "
    "_symmetry_equiv_pos_as_xyz _cell_angle_gamma _atom_site_fract_x _symmetry_space_group_name_H-M "
    "_symmetry_Int_Tables_number _chemical_formula_structural _chemical_name_systematic _atom_site_fract_y "
    "_atom_site_symmetry_multiplicity _chemical_formula_sum _atom_site_label _atom_site_type_symbol _cell_length_c "
    "_atom_site_B_iso_or_equiv _symmetry_equiv_pos_site_id _cell_volume _atom_site_fract_z _cell_angle_alpha "
    "_cell_formula_units_Z loop_ data_"
).split()
CRYSTALLM_SYMBOLS = ["x", "y", "z", ".", "(", ")", "+", "-", "/", "'", ",", " ", "\n"]
SG_SUFFIX = "_sg"
UNK = "<unk>"
SG_KEYWORD = "_symmetry_space_group_name_H-M"
NANOGPT_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


# ------------------------------------------------------------------------------------------------ vocabulary


def crystallm_vocabulary(space_groups) -> list[str]:
    """CrystaLLM's token list (index = id) for the given space-group symbols (its spacegroups.txt, in order)."""
    groups = [sg.strip() for sg in space_groups if sg.strip()]
    return [
        *CRYSTALLM_ATOMS,
        *CRYSTALLM_DIGITS,
        *CRYSTALLM_KEYWORDS,
        *CRYSTALLM_SYMBOLS,
        *(sg + SG_SUFFIX for sg in groups),
        UNK,
    ]


def read_vocabulary(meta: str | Path | None = None, spacegroups: str | Path | None = None) -> list[str]:
    """The token list from CrystaLLM's ``meta.pkl`` (``itos``: id -> token) or its ``spacegroups.txt``."""
    if meta is not None:
        with open(meta, "rb") as fh:
            data = pickle.load(fh)  # noqa: S301 - a file the user names, written by CrystaLLM's tokenizer script
        itos = data.get("itos") if isinstance(data, dict) else None
        if not itos:
            raise ValueError(f"{meta} has no 'itos' mapping (expected CrystaLLM's meta.pkl)")
        ids = sorted(int(i) for i in itos)
        if ids != list(range(len(ids))):
            raise ValueError(f"{meta}: 'itos' ids are not 0..{len(ids) - 1}")
        return [itos[i] if i in itos else itos[str(i)] for i in ids]
    if spacegroups is not None:
        return crystallm_vocabulary(Path(spacegroups).read_text().splitlines())
    raise ValueError(
        "give CrystaLLM's vocabulary: --meta META.pkl (its tokenized data) or --spacegroups "
        "spacegroups.txt (crystallm/spacegroups.txt of a CrystaLLM checkout)"
    )


def build_crystallm_tokenizer(tokens: list[str]):
    """A ``PreTrainedTokenizerFast`` giving CrystaLLM's ids for CrystaLLM's CIF text, and decoding back to it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if UNK not in tokens:
        raise ValueError(f"the vocabulary has no {UNK} token")
    if len(set(tokens)) != len(tokens):
        raise ValueError("the vocabulary has duplicate tokens")
    vocab = {t: i for i, t in enumerate(tokens)}
    groups = [t[: -len(SG_SUFFIX)] for t in tokens if t.endswith(SG_SUFFIX)]
    # collapse blanks, then mark the space group after its keyword (only there, as CrystaLLM does)
    steps = [normalizers.Replace(Regex("[ \t]+"), " ")]
    for sg in groups:
        steps.append(
            normalizers.Replace(
                Regex(f"{re.escape(SG_KEYWORD)} {re.escape(sg)}\n"), f"{SG_KEYWORD} {sg}{SG_SUFFIX}\n"
            )
        )
    pieces = sorted((t for t in tokens if t != UNK), key=len, reverse=True)
    pattern = "|".join(re.escape(t) for t in pieces) + r"|\w+|[.,;!?]"
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Sequence([decoders.Replace(SG_SUFFIX, ""), decoders.Fuse()])
    tok.add_special_tokens([UNK])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=UNK, pad_token=UNK, model_max_length=2048)


# ---------------------------------------------------------------------------------------------------- model


def nanogpt_to_gpt2_state_dict(state_dict: dict, n_layer: int, n_embd: int, bias: bool) -> dict:
    """nanoGPT parameter names -> Hugging Face GPT2LMHeadModel's: Linear weights transposed into Conv1D, zero biases
    where nanoGPT has none, causal-mask buffers dropped, ``_orig_mod.`` (torch.compile) removed."""
    import torch

    prefix = "_orig_mod."
    sd = {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    out = {}
    for k, v in sd.items():
        out[k] = v.t().contiguous() if k.endswith(NANOGPT_CONV1D) else v
    if "lm_head.weight" not in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    if not bias:
        dtype = out["transformer.wte.weight"].dtype
        widths = {
            "ln_1": n_embd,
            "ln_2": n_embd,
            "attn.c_attn": 3 * n_embd,
            "attn.c_proj": n_embd,
            "mlp.c_fc": 4 * n_embd,
            "mlp.c_proj": n_embd,
        }
        for i in range(n_layer):
            for name, width in widths.items():
                out.setdefault(f"transformer.h.{i}.{name}.bias", torch.zeros(width, dtype=dtype))
        out.setdefault("transformer.ln_f.bias", torch.zeros(n_embd, dtype=dtype))
    return out


def gpt2_config(model_args: dict, tokenizer=None):
    from transformers import GPT2Config

    missing = {"n_layer", "n_head", "n_embd", "block_size", "vocab_size"} - set(model_args)
    if missing:
        raise ValueError(f"checkpoint model_args lacks {sorted(missing)}")
    n_embd = int(model_args["n_embd"])
    dropout = float(model_args.get("dropout", 0.0) or 0.0)
    return GPT2Config(
        vocab_size=int(model_args["vocab_size"]),
        n_positions=int(model_args["block_size"]),
        n_embd=n_embd,
        n_layer=int(model_args["n_layer"]),
        n_head=int(model_args["n_head"]),
        n_inner=4 * n_embd,
        activation_function="gelu",  # nanoGPT: nn.GELU() (exact erf)
        layer_norm_epsilon=1e-5,  # F.layer_norm's default, which nanoGPT uses
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id if tokenizer is not None else None,
    )


def convert_crystallm(
    ckpt: str | Path, out: str | Path, meta: str | Path | None = None, spacegroups: str | Path | None = None
) -> Path:
    """Write CrystaLLM checkpoint ``ckpt`` as a Hugging Face GPT-2 model + tokenizer in ``out``; returns ``out``."""
    import torch
    from transformers import GPT2LMHeadModel

    checkpoint = torch.load(str(ckpt), map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "model_args" not in checkpoint or "model" not in checkpoint:
        raise ValueError(
            f"{ckpt} is not a nanoGPT/CrystaLLM checkpoint (a dict with 'model_args' and 'model')"
        )
    model_args = dict(checkpoint["model_args"])
    tokens = read_vocabulary(meta, spacegroups)
    if len(tokens) > int(model_args["vocab_size"]):
        raise ValueError(
            f"the vocabulary has {len(tokens)} tokens but the checkpoint embeds "
            f"{model_args['vocab_size']}: not this checkpoint's vocabulary"
        )
    if len(tokens) < int(model_args["vocab_size"]):
        logger.warning(
            "the checkpoint embeds %s ids, the vocabulary has %d (the extra ids are never produced "
            "by the tokenizer)",
            model_args["vocab_size"],
            len(tokens),
        )
    tokenizer = build_crystallm_tokenizer(tokens)
    config = gpt2_config(model_args, tokenizer)
    config.plaid_converted_from = "crystallm"
    state_dict = nanogpt_to_gpt2_state_dict(
        checkpoint["model"], config.n_layer, config.n_embd, bool(model_args.get("bias", True))
    )
    model = GPT2LMHeadModel(config)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit GPT-2: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    logger.info(
        "converted %s (%d layers, %d embd, vocab %d) to %s",
        ckpt,
        config.n_layer,
        config.n_embd,
        config.vocab_size,
        out,
    )
    return out


# ------------------------------------------------------------------------------------------------------ CLI


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert", help="convert another project's model into a Hugging Face model"
    )
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    p = sub.add_parser("crystallm", help="a CrystaLLM/nanoGPT ckpt.pt -> GPT2LMHeadModel + tokenizer")
    p.add_argument("ckpt", help="CrystaLLM ckpt.pt")
    p.add_argument("out", help="output directory (plaid sample --model OUT --representation cif)")
    vocab = p.add_mutually_exclusive_group(required=True)
    vocab.add_argument(
        "--meta", help="CrystaLLM's meta.pkl of the tokenized training data (exact vocabulary)"
    )
    vocab.add_argument(
        "--spacegroups", help="CrystaLLM's crystallm/spacegroups.txt (vocabulary rebuilt from it)"
    )
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    from .cli_checks import require_file, require_writable_dir
    from .errors import InputError

    require_file(args.ckpt, "CrystaLLM checkpoint", "CKPT")
    for option, value in (("--meta", args.meta), ("--spacegroups", args.spacegroups)):
        if value is not None:
            require_file(value, "CrystaLLM vocabulary", option)
    require_writable_dir(args.out, "OUT")
    try:
        out = convert_crystallm(args.ckpt, args.out, meta=args.meta, spacegroups=args.spacegroups)
    except (
        ValueError,
        KeyError,
        EOFError,
        RuntimeError,
        pickle.UnpicklingError,
    ) as exc:  # not the expected layout
        raise InputError(f"{args.ckpt}: {exc}") from None
    print(out)
    return 0
