"""Model and tokenizer loading shared by the SFT recipe, the DPO recipe and inference (sampling).

- ``load_tokenizer``: the model's own tokenizer, or plaid's local domain tokenizer (``plaid.tokenizer``); a pad token
  is always set.
- ``load_model_for_training``: the base model (optionally 4-bit NF4 through TRL's ``get_quantization_config``), the
  LoRA config (TRL's ``get_peft_config``), or for DPO the SFT adapter loaded trainable on that base.
- ``load_for_inference``: a LoRA adapter directory (its ``adapter_config.json`` names the base, which may be a local
  directory), a merged or full model directory, or a from-scratch model directory; tokenizer saved next to the
  weights at training time, ``padding_side="left"``.

Local architectures (``plaid-tiny-llama``, ``plaid-scratch-llama``) are created from a ``LlamaConfig`` sized to the
domain tokenizer and saved to a directory (``<output_dir>/base_model``) before training, so every adapter names a
real base directory and nothing is ever downloaded.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# name -> LlamaConfig fields (vocab_size comes from the tokenizer).
LOCAL_ARCHITECTURES: dict[str, dict[str, Any]] = {
    # 2-layer LLaMA for CPU smoke runs and tests.
    "plaid-tiny-llama": dict(
        hidden_size=64,
        intermediate_size=176,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
    ),
    # CrystaLLM "small"-sized decoder (8 layers, 8 heads, 512 embedding), LLaMA blocks, trained from scratch.
    "plaid-scratch-llama": dict(
        hidden_size=512,
        intermediate_size=1376,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=2048,
    ),
}
BASE_MODEL_SUBDIR = "base_model"
ADAPTER_CONFIG = "adapter_config.json"


# --------------------------------------------------------------------------------------------------- tokenizer


def load_tokenizer(
    model_name_or_path: str | None,
    representation: str = "wyckoff",
    tokenizer: str | None = None,
    padding_side: str = "right",
    revision: str | None = None,
    trust_remote_code: bool = False,
):
    """The tokenizer for training or generation.

    ``tokenizer="domain"`` (or a ``plaid-*`` local architecture with no tokenizer given) builds the domain tokenizer
    for ``representation``; another string loads a saved tokenizer from that path/id; None loads the model's own.
    The pad token is set (unk, else eos) when the tokenizer has none.
    """
    from transformers import AutoTokenizer

    from ..tokenizer import build_tokenizer

    if tokenizer == "domain" or (tokenizer is None and model_name_or_path in LOCAL_ARCHITECTURES):
        tok = build_tokenizer(representation, padding_side=padding_side)
    else:
        source = tokenizer or model_name_or_path
        if source is None:
            raise ValueError("no tokenizer: set model_name_or_path or tokenizer")
        tok = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
        tok.padding_side = padding_side
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    return tok


# ----------------------------------------------------------------------------------------------- local models


def create_local_model(
    name: str,
    tokenizer,
    output_dir: str | os.PathLike,
    seed: int = 0,
    overrides: dict[str, int] | None = None,
) -> Path:
    """Create the local architecture ``name`` sized to ``tokenizer``, save it with the tokenizer, return its dir.

    ``overrides`` replaces LlamaConfig fields of the named architecture (layers, width, heads, MLP width, context
    length: the recipes' architecture keys). An existing directory with the same config is reused (so a resumed run
    keeps the same initial weights); one with another config is an error, not silently replaced.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if name not in LOCAL_ARCHITECTURES:
        raise ValueError(f"unknown local architecture {name!r}; choose from {', '.join(LOCAL_ARCHITECTURES)}")
    path = Path(output_dir).resolve()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **{**LOCAL_ARCHITECTURES[name], **(overrides or {})},
    )
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads {config.num_attention_heads}"
        )
    existing = path / "config.json"
    if existing.exists():
        saved = json.loads(existing.read_text())
        wanted = {k: getattr(config, k) for k in ("vocab_size", *LOCAL_ARCHITECTURES[name])}
        differs = {k: (saved.get(k), v) for k, v in wanted.items() if saved.get(k) != v}
        if saved.get("plaid_architecture") == name and not differs:
            logger.info("reusing local %s base model at %s", name, path)
            return path
        if saved.get("plaid_architecture") == name:
            raise ValueError(
                f"{path} holds a {name} base model with another configuration {differs} (saved, wanted); "
                "use another output_dir or delete it"
            )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.config.plaid_architecture = name
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("created local %s (%.2fM parameters) at %s", name, n_params / 1e6, path)
    return path


def cached_snapshot(repo_id: str, revision: str | None = None) -> str | None:
    """The local snapshot directory of Hub model ``repo_id`` in the Hugging Face cache (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``), or None when it is not cached. Nothing is downloaded: this is how a user who has the base
    of a published adapter cached loads it offline (``HF_HUB_OFFLINE=1``)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


def adapter_base(adapter_dir: str | os.PathLike, base_model: str | os.PathLike | None = None) -> str:
    """The base model an adapter directory was trained on (its adapter_config.json), resolving a moved local base:
    a missing recorded directory falls back to ``<adapter_dir>/base_model``. ``base_model`` overrides the recorded
    base (a published adapter whose base lives in another directory than its Hub id says)."""
    adapter_dir = Path(adapter_dir)
    if base_model is not None:
        if Path(base_model).expanduser().exists():
            return str(Path(base_model).expanduser())
        if str(base_model).startswith(("/", ".", "~")):
            raise FileNotFoundError(f"base model {base_model} not found")
        return str(base_model)
    config = json.loads((adapter_dir / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_dir / ADAPTER_CONFIG} names no base_model_name_or_path")
    if Path(base).expanduser().exists():
        return base
    fallback = adapter_dir / BASE_MODEL_SUBDIR
    if fallback.is_dir():
        logger.info("base %s of %s not found; using %s", base, adapter_dir, fallback)
        return str(fallback.resolve())
    if base in LOCAL_ARCHITECTURES or base.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"base model {base} of adapter {adapter_dir} not found (nor {fallback})")
    return base  # a Hub id: transformers reads it from the cache (offline) or downloads it


def adapter_vocab_size(adapter_dir: str | os.PathLike) -> int | None:
    """Rows of the embedding saved with an adapter (PEFT saves ``embed_tokens``/``lm_head`` when the vocabulary was
    resized for training, as crystal-text-llm does when it adds a ``[PAD]`` token to LLaMA-2), else None."""
    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        for key in fh.keys():
            if key.endswith(("embed_tokens.weight", "embed_tokens.base_layer.weight")):
                return int(fh.get_slice(key).get_shape()[0])
    return None


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


# --------------------------------------------------------------------------------------------------- training


def _torch_dtype(dtype):
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return dtype
    if dtype in ("bfloat16", "float16", "float32"):
        return getattr(torch, dtype)
    raise ValueError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32")


def kbit_device_map() -> dict[str, int] | None:
    """Every module of a quantized model on this process's accelerator (what TRL's removed get_kbit_device_map
    returned); None on CPU."""
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available()):
        return {"": PartialState().local_process_index}
    return None


def quantization_config(model_args):
    """TRL's BitsAndBytesConfig for ``model_args`` (4-bit: NF4/FP4, nested quantization, compute dtype = dtype)."""
    from trl import get_quantization_config

    if (model_args.load_in_4bit or model_args.load_in_8bit) and model_args.dtype in (None, "auto"):
        raise ValueError("4/8-bit loading needs an explicit dtype (the compute dtype), e.g. dtype: bfloat16")
    return get_quantization_config(model_args)


def resolve_base_model(model_args, plaid_args, tokenizer, output_dir: str | os.PathLike) -> str:
    """The base model path/id to load: the SFT adapter's base for DPO, a created local model for ``plaid-*``."""
    base = model_args.model_name_or_path
    if plaid_args.sft_adapter:
        adapter_base_model = adapter_base(plaid_args.sft_adapter)
        if (
            base
            and base != adapter_base_model
            and not (
                Path(base).exists()
                and Path(adapter_base_model).exists()
                and Path(base).resolve() == Path(adapter_base_model).resolve()
            )
        ):
            raise ValueError(
                f"model_name_or_path {base!r} differs from the SFT adapter's base {adapter_base_model!r}; "
                "leave model_name_or_path unset for DPO from an adapter"
            )
        base = adapter_base_model
    if base is None:
        raise ValueError("set model_name_or_path (or plaid sft_adapter for DPO)")
    overrides = plaid_args.architecture_overrides()
    if base in LOCAL_ARCHITECTURES:
        base = str(
            create_local_model(base, tokenizer, Path(output_dir) / BASE_MODEL_SUBDIR, overrides=overrides)
        )
    elif overrides:
        raise ValueError(
            f"architecture keys {sorted(overrides)} apply only to local architectures "
            f"({', '.join(LOCAL_ARCHITECTURES)}), not to {base!r}"
        )
    return base


def load_model_for_training(model_args, plaid_args, training_args, tokenizer):
    """(model, peft_config) for a TRL trainer.

    - 4-bit/8-bit when ``model_args.load_in_4bit/8bit`` (TRL's get_quantization_config; bf16 compute when
      ``dtype: bfloat16``), placed with ``kbit_device_map()``; non-quantized modules keep ``dtype`` (PLaID: bf16).
    - ``peft_config`` from TRL's get_peft_config when ``use_peft`` (the trainer wraps the model).
    - DPO from an SFT adapter (``plaid_args.sft_adapter``): the adapter is loaded *trainable* as "default" and
      ``peft_config`` is None; TRL's DPOTrainer then adds a frozen copy named "ref" as the reference model.
    """
    from transformers import AutoModelForCausalLM

    qconfig = quantization_config(model_args)
    if qconfig is not None and not (model_args.use_peft or plaid_args.sft_adapter):
        raise ValueError("a 4/8-bit base can only be trained through LoRA: set use_peft: true")
    base = resolve_base_model(model_args, plaid_args, tokenizer, training_args.output_dir)
    kwargs: dict[str, Any] = dict(
        revision=model_args.model_revision,
        dtype=_torch_dtype(model_args.dtype) or "auto",
        trust_remote_code=training_args.trust_remote_code,
    )
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = kbit_device_map()
    logger.info("loading base model %s (%s)", base, "4-bit" if model_args.load_in_4bit else kwargs["dtype"])
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise ValueError(
            f"tokenizer has {len(tokenizer)} tokens but the model embeds only "
            f"{model.get_input_embeddings().num_embeddings}; use the tokenizer saved with the model"
        )
    if training_args.activation_checkpointing:
        model.config.use_cache = False

    if plaid_args.sft_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, plaid_args.sft_adapter, is_trainable=True)
        logger.info("policy: SFT adapter %s loaded trainable as 'default'", plaid_args.sft_adapter)
        return model, None
    if model_args.use_peft:
        from trl import get_peft_config

        return model, get_peft_config(model_args)
    return model, None


# -------------------------------------------------------------------------------------------------- inference


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def inference_load_kwargs(device: str, dtype, load_in_4bit: bool = False) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments for inference: ``dtype`` (torch dtype), and for ``load_in_4bit`` the
    QLoRA quantization PLaID trained with (bitsandbytes NF4, double quantization, compute in ``dtype``), every
    module placed on ``device``. 4-bit needs bitsandbytes on a CUDA device."""
    from transformers import BitsAndBytesConfig

    kwargs: dict[str, Any] = dict(dtype=dtype)
    if load_in_4bit:
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device}
    return kwargs


def keep_4bit_layers_on_generic_cpu_path(model) -> int:
    """bitsandbytes >= 0.50 repacks a 4-bit layer's weights for its AVX512-BF16 CPU kernel at the first forward in
    eval mode, and that packing needs ``out_features`` divisible by 32 and ``in_features`` by the quantization
    block size (64; LLaMA-2-7B's layers are, small local models' need not be). Layers that do not fit keep
    bitsandbytes' generic CPU path instead of failing there. Returns how many layers were kept back."""
    kept = 0
    for module in model.modules():
        if not getattr(module, "support_avx512bf16_for_cpu", False):
            continue
        state = getattr(module.weight, "quant_state", None)
        block = getattr(state, "blocksize", 64) or 64
        if module.out_features % 32 or module.in_features % block:
            module.support_avx512bf16_for_cpu = False
            kept += 1
    return kept


def load_for_inference(
    path: str | os.PathLike,
    device: str | None = None,
    dtype=None,
    merge: bool = False,
    load_in_4bit: bool = False,
    base_model: str | os.PathLike | None = None,
):
    """(model, tokenizer) ready for ``generate``: eval mode, on ``device``, tokenizer with pad token and
    ``padding_side="left"``.

    ``path`` is a LoRA adapter directory (base from its adapter_config.json, a local dir or a Hub id read from the
    Hugging Face cache; ``base_model`` overrides it), a merged/full model directory, or a from-scratch model
    directory. A published adapter without tokenizer files uses its base's tokenizer. When the adapter was trained
    with a vocabulary larger than its base's (added pad token), the base's embeddings are resized to it before the
    adapter loads. ``dtype`` defaults to bf16 on CUDA with bf16 support, else float32. ``merge=True`` folds the
    adapter into the base weights (faster generation; not with ``load_in_4bit``).
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    device = device or default_device()
    if dtype is None:
        use_bf16 = (
            str(device).startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        )
        dtype = torch.bfloat16 if use_bf16 else torch.float32
    dtype = _torch_dtype(dtype)
    kwargs = inference_load_kwargs(device, dtype, load_in_4bit)

    if is_adapter_dir(path):
        from peft import PeftModel

        base = adapter_base(path, base_model)
        tokenizer_source = path if (path / "tokenizer_config.json").exists() else base
        tokenizer = load_tokenizer(str(tokenizer_source), padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        rows = model.get_input_embeddings().num_embeddings
        wanted = adapter_vocab_size(path) or len(tokenizer)
        if wanted > rows:
            logger.info("resizing the base embeddings of %s from %d to %d tokens for %s", base, rows, wanted, path)
            if adapter_vocab_size(path) is None:
                logger.warning(
                    "the tokenizer of %s has %d tokens, its base %d, and the adapter saved no embeddings: the %d "
                    "added tokens get untrained embeddings", path, wanted, rows, wanted - rows,
                )
            model.resize_token_embeddings(wanted)
        model = PeftModel.from_pretrained(model, str(path))
        if merge:
            if load_in_4bit:
                raise ValueError(
                    "merge=True needs an unquantized base; use plaid merge to write a merged model"
                )
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        tokenizer = load_tokenizer(str(path), padding_side="left")
    if not load_in_4bit:
        model.to(device)
    else:
        keep_4bit_layers_on_generic_cpu_path(model)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    logger.info("loaded %s for inference on %s (%s%s)", path, device, dtype, ", 4-bit NF4" if load_in_4bit else "")
    return model, tokenizer
