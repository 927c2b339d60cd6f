#!/usr/bin/env bash
# Train the Perov-5 from-scratch recipe on this CPU and run both benchmarks on its held-out test split.
# Every step resumes when re-run. Writes outputs/perov_5/{sft_scratch,bench_csp*,bench_gen*}.
set -euo pipefail
export PLAID_DATA_DIR=${PLAID_DATA_DIR:-../shared/data} HF_HUB_OFFLINE=1
MODEL=outputs/perov_5/sft_scratch
NUM_TARGETS=${NUM_TARGETS:-}   # empty: the whole test split
[ -f "$MODEL/model.safetensors" ] || accelerate launch --cpu --num_cpu_threads_per_process 2 recipes/sft.py --config recipes/configs/perov_5/sft_scratch.yaml
# CSP (composition only), n = 1 and 20, grammar-constrained (the README's table), then unconstrained as CrystaLLM does
plaid benchmark csp --model $MODEL --targets $MODEL/dataset ${NUM_TARGETS:+--num-targets $NUM_TARGETS} \
    --n 1 20 --batch-size 64 --out outputs/perov_5/bench_csp_constrained
plaid benchmark csp --model $MODEL --targets $MODEL/dataset ${NUM_TARGETS:+--num-targets $NUM_TARGETS} \
    --n 1 --temperature 0 --batch-size 64 --out outputs/perov_5/bench_csp_greedy_v2   # n=1, greedy decoding
# one candidate set for n=1 and n=20: candidate 1 greedy, candidates 2-20 sampled at T=0.7
plaid benchmark csp --model $MODEL --targets $MODEL/dataset ${NUM_TARGETS:+--num-targets $NUM_TARGETS} \
    --n 1 20 --first-greedy --temperature 0.7 --batch-size 64 --out outputs/perov_5/bench_csp_first_greedy
plaid benchmark csp --model $MODEL --targets $MODEL/dataset ${NUM_TARGETS:+--num-targets $NUM_TARGETS} \
    --n 1 20 --no-constrained --batch-size 64 --out outputs/perov_5/bench_csp
# unconditional generation: novelty against the training split, coverage against the test split (CDVAE)
plaid benchmark gen --model $MODEL --reference $MODEL/dataset --test $MODEL/dataset --num-samples 1000 \
    --batch-size 64 --dataset perov_5 --out outputs/perov_5/bench_gen
# the same at CDVAE's / PLaID's sample count (COV-R depends on it): 10,000 samples
plaid benchmark gen --model $MODEL --reference $MODEL/dataset --test $MODEL/dataset --num-samples 10000 \
    --batch-size 128 --dataset perov_5 --out outputs/perov_5/bench_gen_10k
