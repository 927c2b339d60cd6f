"""The plaid options the recipes add to TRL's ScriptArguments / ModelConfig / SFTConfig / DPOConfig."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PlaidArguments:
    """What TRL has no field for: crystal representation, dataset source and task mix, tokenizer choice, and for DPO
    the preference dataset and the SFT adapter to continue from."""

    representation: str = field(
        default="wyckoff", metadata={"help": "Crystal text representation: wyckoff, coords or cif."}
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
            "help": "Task weights, e.g. {unconditional: 0.5, conditional: 0.4, infill: 0.1} (JSON on the CLI)."
        },
    )
    max_structures: int | None = field(default=None, metadata={"help": "Use at most this many structures."})
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
    preference_dataset: str | None = field(
        default=None,
        metadata={
            "help": "DPO: a DatasetDict saved with save_to_disk, columns prompt/chosen/rejected (plaid pairs)."
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
        if isinstance(self.task_mix, str):
            self.task_mix = json.loads(self.task_mix) if self.task_mix.strip() else None
        if self.task_mix is not None and not isinstance(self.task_mix, dict):
            raise ValueError(f"task_mix must be a mapping task -> weight, got {self.task_mix!r}")
