#!/usr/bin/env bash
# Carbon-24 on this CPU: train the from-scratch recipe, CSP on its held-out test split, then PLaID's alignment
# (M3GNet labels, one DPO round) and the before/after evaluation with CHGNet on fresh unconditional samples.
# Every step resumes when re-run. Writes outputs/carbon_24/{sft_scratch,bench_csp_constrained,align,align_msun,bench_gen_*}.
set -euo pipefail
export PLAID_DATA_DIR=${PLAID_DATA_DIR:-../shared/data} HF_HUB_OFFLINE=1
MODEL=outputs/carbon_24/sft_scratch
NUM_SAMPLES=${NUM_SAMPLES:-128}
MAX_ATOMS=${MAX_ATOMS:-24}   # Carbon-24's cells hold 6-24 atoms; the same grammar bound as the alignment's samples
NUM_TARGETS=${NUM_TARGETS:-60}   # first K of the 112 test structures (empty: all)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread per job: faster on a shared 2-core machine
REFS=$PLAID_DATA_DIR/mp/2023-02-07-mp-elemental-reference-entries.json.gz   # the hull: C's MP ground state
[ -f "$MODEL/model.safetensors" ] || OMP_NUM_THREADS=2 accelerate launch --cpu --num_cpu_threads_per_process 2 recipes/sft.py \
    --config recipes/configs/carbon_24/sft_scratch.yaml
plaid benchmark csp --model $MODEL --targets $MODEL/dataset ${NUM_TARGETS:+--num-targets $NUM_TARGETS} --n 1 20 --batch-size 64 \
    --out outputs/carbon_24/bench_csp_constrained
plaid align --config recipes/configs/carbon_24/align.yaml
# the same samples and labels, M.S.U.N.-aware pairs (mode msun): the copied stages are skipped, pairs and DPO run
mkdir -p outputs/carbon_24/align_msun/iter_1
cp -rn outputs/carbon_24/align/iter_1/{samples.jsonl,sample.done,labels} outputs/carbon_24/align_msun/iter_1/
plaid align --config recipes/configs/carbon_24/align_msun.yaml
# before (SFT) and after (DPO), on fresh samples: same seed, same settings, CHGNet relaxation, E_hull vs C's reference
for pair in "sft:$MODEL" "dpo:outputs/carbon_24/align/iter_1/dpo" "dpo_msun:outputs/carbon_24/align_msun/iter_1/dpo"; do
    plaid benchmark gen --model "${pair#*:}" --reference $MODEL/dataset --test $MODEL/dataset \
        --num-samples $NUM_SAMPLES --max-atoms $MAX_ATOMS --batch-size 64 --seed 12345 --dataset carbon_24 \
        --relaxer chgnet --relax-steps 20 --hull $REFS --out outputs/carbon_24/bench_gen_${pair%%:*}
done
