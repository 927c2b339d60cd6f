"""Direct preference optimisation of an SFT LoRA adapter on prompt/chosen/rejected pairs (``plaid pairs``).

The policy continues from the SFT adapter (``sft_adapter``); the reference is a frozen copy of it, a second adapter
named "ref" on the same (4-bit) base. Logs rewards/margins and rewards/accuracies.

Launch (one GPU, bf16):
    accelerate launch --config_file accelerate_config.yaml recipes/dpo.py --config recipes/configs/llama2-7b/dpo_qlora.yaml
CPU smoke run (after the tiny SFT run):
    accelerate launch --cpu recipes/dpo.py --config recipes/configs/tiny/dpo.yaml
"""

from plaid.training.args import recipe_parser
from plaid.training.run import run_dpo


def main(script_args, training_args, model_args, plaid_args):
    return run_dpo(script_args, training_args, model_args, plaid_args)


if __name__ == "__main__":
    main(*recipe_parser("dpo").parse_args_and_config(fail_with_unknown_args=True))
