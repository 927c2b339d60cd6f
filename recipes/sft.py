"""Supervised fine-tuning of a crystal-text LM (prompt/completion, loss on the crystal text only).

Launch (one GPU, bf16):
    accelerate launch --config_file accelerate_config.yaml recipes/sft.py --config recipes/configs/llama2-7b/sft_qlora.yaml
CPU smoke run (tiny model, ~1 minute):
    accelerate launch --cpu recipes/sft.py --config recipes/configs/tiny/sft.yaml

Any config key can be overridden on the command line (``--learning_rate 2e-5``); unknown keys are errors.
"""

from plaid.training.args import recipe_parser
from plaid.training.run import run_sft


def main(script_args, training_args, model_args, plaid_args):
    return run_sft(script_args, training_args, model_args, plaid_args)


if __name__ == "__main__":
    main(*recipe_parser("sft").parse_args_and_config(fail_with_unknown_args=True))
