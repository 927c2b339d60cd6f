"""The plaid options the recipes add to TRL's ScriptArguments / ModelConfig / SFTConfig / DPOConfig."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlaidArguments:
    """What TRL has no field for: crystal representation, dataset source and task mix, tokenizer choice, and for DPO
    the preference dataset and the SFT adapter to continue from."""

    representation: str = field(
        default="wyckoff", metadata={"help": "Crystal text representation: wyckoff, coords or cif."}
    )
    prompt_style: str = field(
        default="plaid",
        metadata={
            "help": "Wording of the training prompts (plaid.prompts.PROMPT_STYLES): plaid, plaid-paper (PLaID's), "
            "crystal-text-llm (Gruver et al.'s) or crystallm (CrystaLLM's data_ prompts, cif only). Recorded in "
            "plaid_run.json; plaid sample uses it by default."
        },
    )
    dataset_source: str | None = field(
        default=None,
        metadata={
            "help": "SFT data for plaid.data.build_dataset: a CDVAE CSV path, a CIF directory, hf:owner/name, a "
            "directory written by save_to_disk, or perov_5/carbon_24/mp_20/mpts_52 (from PLAID_DATA_DIR). "
            "Environment variables such as ${PLAID_DATA_DIR} are expanded."
        },
    )
    task_mix: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "plaid.data task weights: unconditional=1,conditional=1,infill=1 (or a YAML mapping / JSON)."
        },
    )
    max_structures: int | None = field(default=None, metadata={"help": "Use at most this many structures."})
    examples_per_structure: int = field(
        default=1,
        metadata={
            "help": "Prompt/completion rows per structure, each with its own task drawn from task_mix."
        },
    )
    dataset_seed: int = field(
        default=0, metadata={"help": "Seed of the dataset builder (task assignment, splits)."}
    )
    data_num_proc: int = field(default=1, metadata={"help": "Processes for encoding structures."})
    tokenizer: str | None = field(
        default=None,
        metadata={
            "help": "'domain' builds plaid's local domain tokenizer for the representation; a path or id loads a "
            "saved tokenizer; unset uses the model's own tokenizer (the domain one for plaid-* local models)."
        },
    )
    split_fractions: str | None = field(
        default=None,
        metadata={
            "help": "Train/validation/test fractions for a source without its own splits, e.g. '0.9,0.05,0.05' "
            "(the builder's default). '1,0,0' uses the whole source for training (a file given as the training "
            "split)."
        },
    )
    num_hidden_layers: int | None = field(
        default=None, metadata={"help": "Local plaid-* architectures only: number of decoder layers."}
    )
    hidden_size: int | None = field(
        default=None, metadata={"help": "Local plaid-* architectures only: embedding width."}
    )
    num_attention_heads: int | None = field(
        default=None, metadata={"help": "Local plaid-* architectures only: attention heads (and KV heads)."}
    )
    intermediate_size: int | None = field(
        default=None, metadata={"help": "Local plaid-* architectures only: MLP width."}
    )
    max_position_embeddings: int | None = field(
        default=None, metadata={"help": "Local plaid-* architectures only: context length in tokens."}
    )
    preference_dataset: str | None = field(
        default=None,
        metadata={
            "help": "DPO: a DatasetDict saved with save_to_disk, columns prompt/chosen/rejected (plaid pairs)."
        },
    )
    preference_pairs: str = field(
        default="saved",
        metadata={
            "help": "DPO: 'saved' reads prompt/chosen/rejected from preference_dataset; 'mismatch' makes toy pairs "
            "from a built SFT dataset there (conditional/infill rows: chosen = the true completion, rejected = "
            "another material's), for smoke runs and tests only.",
            "choices": ["saved", "mismatch"],
        },
    )
    sft_adapter: str | None = field(
        default=None,
        metadata={
            "help": "DPO: the SFT LoRA adapter directory. The policy continues from it and the reference is a frozen "
            "copy of it (a second adapter named 'ref' on the same base); its base model is the one in its "
            "adapter_config.json."
        },
    )

    def __post_init__(self):
        from ..prompts import TASK_INSTRUCTIONS

        if self.representation not in TASK_INSTRUCTIONS:
            raise ValueError(
                f"unknown representation {self.representation!r}; use {', '.join(TASK_INSTRUCTIONS)}"
            )
        if isinstance(self.task_mix, str) and self.task_mix.strip().startswith("{"):
            self.task_mix = json.loads(self.task_mix)
        from ..data.tasks import check_style, parse_task_mix

        check_style(self.prompt_style, self.representation, parse_task_mix(self.task_mix))  # now, not after loading
        if self.split_fractions is not None:
            self.split_tuple()

    def architecture_overrides(self) -> dict[str, int]:
        """The LlamaConfig fields set in the config for a local ``plaid-*`` architecture."""
        out = {k: getattr(self, k) for k in ARCHITECTURE_KEYS if getattr(self, k) is not None}
        if "num_attention_heads" in out:
            out["num_key_value_heads"] = out["num_attention_heads"]
        return out

    def split_tuple(self) -> tuple[float, float, float] | None:
        if self.split_fractions is None:
            return None
        parts = tuple(float(x) for x in str(self.split_fractions).split(","))
        if len(parts) != 3 or any(x < 0 for x in parts) or abs(sum(parts) - 1) > 1e-6:
            raise ValueError(
                f"split_fractions must be three non-negative numbers summing to 1: {self.split_fractions!r}"
            )
        return parts


ARCHITECTURE_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)


def recipe_arguments(recipe: str) -> tuple[type, ...]:
    """The dataclasses a recipe parses: TRL's ScriptArguments, SFTConfig or DPOConfig, ModelConfig, then plaid's."""
    from trl import DPOConfig, ModelConfig, ScriptArguments, SFTConfig

    configs = {"sft": SFTConfig, "dpo": DPOConfig}
    if recipe not in configs:
        raise ValueError(f"unknown recipe {recipe!r}; choose from {', '.join(configs)}")
    return (ScriptArguments, configs[recipe], ModelConfig, PlaidArguments)


def recipe_parser(recipe: str):
    """A ``TrlParser`` for ``recipe``. ``parse_args_and_config()`` is strict: an unknown YAML key raises
    ValueError (trl's ``fail_with_unknown_args=True``), an unknown command-line flag too (HfArgumentParser)."""
    from trl import TrlParser

    return TrlParser(recipe_arguments(recipe))


def parse_recipe_config(recipe: str, config: str | os.PathLike, *overrides: str):
    """(script_args, training_args, model_args, plaid_args) from a YAML config plus command-line overrides."""
    return recipe_parser(recipe).parse_args_and_config(
        ["--config", str(config), *overrides], fail_with_unknown_args=True
    )
