"""Training: shared model/tokenizer loading for the SFT and DPO recipes and for inference, dataset preparation,
publishing (``plaid push``) and adapter merging (``plaid merge``)."""

from .args import PlaidArguments
from .model import (
    LOCAL_ARCHITECTURES,
    load_for_inference,
    load_model_for_training,
    load_tokenizer,
)

__all__ = [
    "LOCAL_ARCHITECTURES",
    "PlaidArguments",
    "load_for_inference",
    "load_model_for_training",
    "load_tokenizer",
]
