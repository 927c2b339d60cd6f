"""The SFT and DPO runs behind ``recipes/sft.py`` and ``recipes/dpo.py``: one setup (seed, tokenizer, model) and
one finish (save weights + tokenizer + run record) shared by both."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from .data import preference_dataset, sft_dataset, split
from .model import adapter_base, load_model_for_training, load_tokenizer

logger = logging.getLogger(__name__)

RUN_RECORD = "plaid_run.json"  # every argument of the run, read by plaid push for the model card


def _setup_logging(training_args) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("plaid").setLevel(logging.INFO if training_args.should_log else logging.WARNING)


def prepare(training_args, model_args, plaid_args):
    """Seed, tokenizer and (model, peft_config), identical for SFT and DPO."""
    from transformers import set_seed

    _setup_logging(training_args)
    set_seed(training_args.seed)
    tokenizer_source = model_args.model_name_or_path
    if plaid_args.sft_adapter and plaid_args.tokenizer is None:
        # the tokenizer saved with the SFT adapter, else its base model's
        saved = (Path(plaid_args.sft_adapter) / "tokenizer_config.json").exists()
        tokenizer_source = plaid_args.sft_adapter if saved else adapter_base(plaid_args.sft_adapter)
    tokenizer = load_tokenizer(
        tokenizer_source,
        representation=plaid_args.representation,
        tokenizer=plaid_args.tokenizer,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
    )
    model, peft_config = load_model_for_training(model_args, plaid_args, training_args, tokenizer)
    return tokenizer, model, peft_config


def last_checkpoint(training_args) -> str | None:
    """The checkpoint to resume from: the one asked for, else the newest ``checkpoint-*`` in output_dir."""
    from transformers.trainer_utils import get_last_checkpoint

    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        found = get_last_checkpoint(training_args.output_dir)
        if found:
            logger.info("resuming from %s", found)
        return found
    return None


def run_record(recipe: str, script_args, training_args, model_args, plaid_args, trainer=None) -> dict:
    """Every argument of the run (and, with ``trainer``, its base model and log history so far)."""
    record = {
        "recipe": recipe,
        "script_args": dataclasses.asdict(script_args),
        "model_args": dataclasses.asdict(model_args),
        "plaid_args": dataclasses.asdict(plaid_args),
        "training_args": training_args.to_dict(),
    }
    if trainer is not None:
        record["base_model"] = _base_name(trainer.model)
        record["log_history"] = trainer.state.log_history
    return record


def run_record_callback(recipe: str, script_args, training_args, model_args, plaid_args):
    """A TrainerCallback writing ``plaid_run.json`` into output_dir and each checkpoint when it is saved, so a run
    killed after a checkpoint still says how it was made."""
    from transformers import TrainerCallback

    class RunRecordCallback(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            if not state.is_world_process_zero:
                return
            record = run_record(recipe, script_args, training_args, model_args, plaid_args)
            record["base_model"] = _base_name(model) if model is not None else None
            record["global_step"] = state.global_step
            record["log_history"] = state.log_history
            text = json.dumps(record, indent=2, default=str)
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            for folder in (Path(args.output_dir), checkpoint):
                if folder.is_dir():
                    (folder / RUN_RECORD).write_text(text)

    return RunRecordCallback()


def finish(trainer, recipe: str, script_args, training_args, model_args, plaid_args, train_result) -> Path:
    """Save weights (adapter or full model) and tokenizer, and the run record with its metrics."""
    out = Path(training_args.output_dir)
    trainer.save_model(str(out))
    ref_copy = out / "ref"
    if recipe == "dpo" and (ref_copy / "adapter_config.json").exists():
        import shutil

        shutil.rmtree(ref_copy)  # the frozen reference is the SFT adapter itself (plaid_args.sft_adapter)
    trainer.processing_class.save_pretrained(str(out))
    metrics = dict(train_result.metrics)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    if trainer.is_world_process_zero():
        record = run_record(recipe, script_args, training_args, model_args, plaid_args, trainer)
        record["train_metrics"] = metrics
        (out / RUN_RECORD).write_text(json.dumps(record, indent=2, default=str))
    logger.info("saved %s to %s", recipe, out)
    return out


def _base_name(model) -> str:
    peft_config = getattr(model, "peft_config", None)
    if peft_config:
        return next(iter(peft_config.values())).base_model_name_or_path
    return getattr(model.config, "_name_or_path", "")


def build_trainer(recipe: str, script_args, training_args, model_args, plaid_args):
    """The TRL trainer of a run, for both recipes: the same tokenizer/model loading (``prepare``), then the SFT
    prompt/completion data or the DPO preference pairs, and SFTTrainer or DPOTrainer.

    DPO from an SFT adapter: the policy is that adapter (trainable) and the reference a frozen copy of it on the
    same base (TRL's "ref" adapter); which model is the reference is checked and logged."""
    from trl import DPOTrainer, SFTTrainer

    if recipe not in ("sft", "dpo"):
        raise ValueError(f"unknown recipe {recipe!r}")
    _check_dataset_name(script_args)
    if recipe == "sft" and training_args.completion_only_loss is False:
        logger.warning("completion_only_loss is False: the prompt tokens are trained on too")
    if recipe == "dpo" and plaid_args.sft_adapter and model_args.use_peft:
        logger.info(
            "sft_adapter given: the LoRA settings of the SFT adapter are used, not the lora_* options"
        )
    tokenizer, model, peft_config = prepare(training_args, model_args, plaid_args)
    if recipe == "sft":
        with training_args.main_process_first(desc="dataset build"):
            dataset = sft_dataset(plaid_args, training_args.output_dir)
    else:
        dataset = preference_dataset(plaid_args)
    trainer = (SFTTrainer if recipe == "sft" else DPOTrainer)(
        model=model,
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=_eval_split(dataset, script_args, training_args),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[run_record_callback(recipe, script_args, training_args, model_args, plaid_args)],
    )
    if recipe == "dpo":
        logger.info("DPO reference model: %s", describe_reference(trainer))
    upcast_trainable_adapters(trainer.model)
    _log_trainable(trainer.model)
    return trainer


def upcast_trainable_adapters(model) -> int:
    """fp32 master weights for the trainable LoRA parameters of a 4/8-bit base; returns how many were cast.

    TRL (1.16) casts them to pure bf16 for a quantized base. In bf16, ``w - 1e-5 == w`` for |w| >= 0.0156 and
    ``w - 1e-6 == w`` for |w| >= 5e-4, so at PLaID's learning rates (SFT 1e-5, DPO 1e-6) most updates would round
    away. The weights stay fp32 (the optimizer updates them exactly); with ``bf16: true`` the forward still
    computes in bf16 under autocast, and PEFT casts the adapter output back to the base layer's dtype."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not any(getattr(base, flag, False) for flag in ("is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit")):
        return 0
    cast = 0
    for _, param in model.named_parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.to(torch.float32)
            cast += 1
    if cast:
        logger.info("trainable adapter weights kept in fp32 (%d tensors) over the quantized base", cast)
    return cast


def build_sft_trainer(script_args, training_args, model_args, plaid_args):
    """The SFTTrainer of a run (loss on the completion, i.e. the crystal text, only)."""
    return build_trainer("sft", script_args, training_args, model_args, plaid_args)


def build_dpo_trainer(script_args, training_args, model_args, plaid_args):
    """The DPOTrainer of a run (reference = frozen copy of the SFT adapter when starting from one)."""
    return build_trainer("dpo", script_args, training_args, model_args, plaid_args)


def train(recipe: str, script_args, training_args, model_args, plaid_args) -> Path:
    """Build the trainer, train (resuming from the newest checkpoint in output_dir), save; returns output_dir."""
    trainer = build_trainer(recipe, script_args, training_args, model_args, plaid_args)
    result = trainer.train(resume_from_checkpoint=last_checkpoint(training_args))
    return finish(trainer, recipe, script_args, training_args, model_args, plaid_args, result)


def run_sft(script_args, training_args, model_args, plaid_args) -> Path:
    """Supervised fine-tuning on prompt/completion rows."""
    return train("sft", script_args, training_args, model_args, plaid_args)


def run_dpo(script_args, training_args, model_args, plaid_args) -> Path:
    """DPO on prompt/chosen/rejected pairs; logs rewards/margins and rewards/accuracies."""
    return train("dpo", script_args, training_args, model_args, plaid_args)


def describe_reference(trainer) -> str:
    """Which model the DPO trainer uses as reference; checks a reference adapter is frozen."""
    model = trainer.model
    peft_config = getattr(model, "peft_config", None) or {}
    if trainer.ref_model is not None:
        return f"a separate model ({_base_name(trainer.ref_model)})"
    if "ref" in peft_config:
        trainable = [n for n, p in model.named_parameters() if ".ref." in n and p.requires_grad]
        if trainable:
            raise RuntimeError(f"the reference adapter has trainable parameters: {trainable[:3]}")
        return (
            f"adapter 'ref' (frozen copy of the SFT adapter, on the same base "
            f"{peft_config['ref'].base_model_name_or_path}); policy = adapter 'default'"
        )
    if peft_config:
        return "the base model with adapters disabled (the new LoRA starts at zero, so policy == reference at step 0)"
    return "none (reference log-probs precomputed or not used)"


def _log_trainable(model) -> None:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info("trainable parameters: %d of %d (%.3f%%)", trainable, total, 100 * trainable / max(total, 1))


def _eval_split(dataset, script_args, training_args):
    if training_args.eval_strategy == "no":
        return None
    return split(dataset, script_args.dataset_test_split)


def _check_dataset_name(script_args) -> None:
    if script_args.dataset_name:
        raise ValueError(
            "dataset_name is not used by plaid recipes: set dataset_source (SFT) or preference_dataset (DPO)"
        )
