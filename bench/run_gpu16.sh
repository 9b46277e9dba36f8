#!/usr/bin/env bash
# The #13/#15 measurement on the device tool's nvidia-h200-x2 (bench/RESULTS.md), from the repository root:
#   bash bench/run_gpu16.sh one   # call 1: phase one, its tasks split over the two GPUs (seed-dependent ones on
#                                 # GPU 0), then the GPU smoke on GPU 1
#   bash bench/run_gpu16.sh two   # call 2: DDP (6 and 24 rows/step) and one model per GPU
# Needs bitsandbytes (and peft) wheels for the device's Python in .whl-perf/ (carried; not in git).
set -u
OUT=${OUT:-/tmp/out}
export PYTHONPATH=$PWD
python3 -m pip install --no-deps --quiet .whl-perf/*.whl 2>&1 | grep -v "root. user" | tail -2
python3 -c "import bitsandbytes, peft; print(\"bitsandbytes\", bitsandbytes.__version__, \"peft\", peft.__version__)" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
case "${1:-one}" in
one)
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  # the shipped recipe (compiled decoder layers) and the same uncompiled (*_eager), side by side per GPU
  CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-500}" \
    --out "$OUT/gpu0" --tasks seed_bf16_cap,kag_t4_cap,kag_t4_cap_eager,kag_bf16_cap,seed_t4_cap,kag_bf16_cap_eager \
    > "$OUT/gpu0.log" 2>&1 &
  ( CUDA_VISIBLE_DEVICES=1 TORCH_LOGS=recompiles python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-500}" \
      --out "$OUT/gpu1" --tasks seed_big,kag_big,kag_big_eager,infer_t4_cap > "$OUT/gpu1.log" 2>&1
    CUDA_VISIBLE_DEVICES=1 timeout $(( ${DEADLINE:-500} + 60 - SECONDS )) python3 bench/gpu_smoke.py --out "$OUT/smoke" \
      > "$OUT/smoke.log" 2>&1; echo "smoke rc $?" >> "$OUT/smoke.log" ) &
  wait
  tail -6 "$OUT/smoke.log"
  grep -c "Recompiling" "$OUT/gpu0.log" "$OUT/gpu1.log"
  grep -v "^{'loss'\|__recompiles\|Loading weights" "$OUT/gpu0.log" | tail -22
  grep -v "^{'loss'\|__recompiles\|Loading weights" "$OUT/gpu1.log" | tail -22
  ;;
tune)  # candidate 16 GB levers on top of the compiled recipe (GPU 0), the shipped compiled recipe and T4
       # inference with a larger budget (GPU 1); each GPU runs the seed for its own same-call ratio
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  CUDA_VISIBLE_DEVICES=0 python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-500}" --out "$OUT/gpu0" \
    --tasks seed_bf16_cap,kag_bf16_cap_tuned,kag_t4_cap_tuned --keep-layers "${KEEP:-8}" > "$OUT/gpu0.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-500}" --out "$OUT/gpu1" \
    --tasks seed_bf16_cap,kag_bf16_cap,infer_t4_cap --t4-infer-extra budget16384 > "$OUT/gpu1.log" 2>&1 &
  wait
  grep -v "^{'loss'\|Loading weights" "$OUT/gpu0.log" | tail -12
  grep -v "^{'loss'\|Loading weights" "$OUT/gpu1.log" | tail -16
  ;;
prof)  # why the big card compiled trains 5x slower than eager (profiles of both, GPU 0, then the shipped 16 GB bf16
       # recipe), and 9 or 10 unchecked layers in the 16 GB bf16 recipe (GPU 1); the seed on each GPU
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles,graph_breaks,perf_hints python3 bench/gpu16.py --phase one \
    --deadline-s "${DEADLINE:-480}" --out "$OUT/gpu0" --profile \
    --tasks seed_big,kag_big_compiled,kag_big_eager,kag_bf16_cap > "$OUT/gpu0.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-480}" --out "$OUT/gpu1" \
    --tasks seed_bf16_cap,kag_bf16_cap_keep9,kag_bf16_cap_keep10 > "$OUT/gpu1.log" 2>&1 &
  wait
  grep -v "^{'loss'\|Loading weights" "$OUT/gpu0.log" | grep -v "^ *$" | tail -30
  grep -v "^{'loss'\|Loading weights" "$OUT/gpu1.log" | tail -12
  head -30 "$OUT"/gpu0/trainbig_kagflow_compiled_profile.txt
  ;;
confirm)  # the shipped recipes after the fourth measurement's fixes: 16 GB bf16 and the big card (now compiled)
          # on GPU 0; the T4 recipe and the GPU smoke's resume paths as a T4 runs them (compiled, checkpointed) on GPU 1
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-470}" \
    --out "$OUT/gpu0" --tasks seed_bf16_cap,kag_bf16_cap,seed_big,kag_big > "$OUT/gpu0.log" 2>&1 &
  ( CUDA_VISIBLE_DEVICES=1 TORCH_LOGS=recompiles python3 bench/gpu16.py --phase one --deadline-s 260 --out "$OUT/gpu1" \
      --tasks seed_bf16_cap,kag_t4_cap > "$OUT/gpu1.log" 2>&1
    CUDA_VISIBLE_DEVICES=1 timeout $(( ${DEADLINE:-470} + 60 - SECONDS )) python3 bench/gpu_smoke.py --out "$OUT/smoke" \
      --only-resume --t4 > "$OUT/smoke.log" 2>&1; echo "smoke rc $?" >> "$OUT/smoke.log" ) &
  wait
  grep -c "Recompiling" "$OUT/gpu0.log" "$OUT/gpu1.log"
  grep -v "^{'loss'\|Loading weights\|__recompiles" "$OUT/gpu0.log" | tail -14
  grep -v "^{'loss'\|Loading weights\|__recompiles" "$OUT/gpu1.log" | tail -8
  grep -v "^{'loss'\|^{'epoch'\|^{'step'" "$OUT/smoke.log" | tail -8
  ;;
two2)  # #15 after the fourth measurement: DDP at 24 rows per step (big card, now compiled), its one-GPU run beside
       # the GPU smoke's resume paths as a T4 runs them (GPU 1); then the two-GPU run and the big card's one model
       # per GPU on 600 rows
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  python3 bench/gpu16.py --phase ddp --ddp-rows 24 --ddp-gpus 1 --out "$OUT/two" > "$OUT/ddp1.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 timeout 260 python3 bench/gpu_smoke.py --out "$OUT/smoke" --only-resume --t4 \
    > "$OUT/smoke.log" 2>&1; echo "smoke rc $?" >> "$OUT/smoke.log"
  wait
  grep -v "^{'loss'\|^{'epoch'\|^{'step'" "$OUT/smoke.log" | tail -4
  python3 bench/gpu16.py --phase two --ddp-rows 24 --ddp-gpus 2 --deadline-s "${DEADLINE:-420}" --out "$OUT/two" \
    --multi-infer big --big-infer-rows "${BIG_ROWS:-600}" > "$OUT/two.log" 2>&1
  grep -v "^{'loss'\|Loading weights" "$OUT/two.log" | tail -12
  ;;
diag)  # the first flex inference batch: block-level mask vs compiled create_block_mask, then infer_big + smoke
  CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles python3 bench/diag_flex_first.py --mask rows > "$OUT/diag_rows.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 TORCH_LOGS=recompiles python3 bench/diag_flex_first.py --mask compiled > "$OUT/diag_compiled.log" 2>&1 &
  wait; tail -30 "$OUT/diag_rows.log"; tail -30 "$OUT/diag_compiled.log"
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  CUDA_VISIBLE_DEVICES=1 python3 bench/gpu16.py --phase one --deadline-s 400 --out "$OUT/gpu1" --tasks infer_big \
    > "$OUT/gpu1.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=0 timeout $(( 560 - SECONDS )) python3 bench/gpu_smoke.py --out "$OUT/smoke" > "$OUT/smoke.log" 2>&1 &
  wait; tail -12 "$OUT/smoke.log"; grep -v "^{'loss'\|Loading weights" "$OUT/gpu1.log" | tail -12
  ;;
fifth)  # fifth measurement: the 16 GB bf16 and T4 training recipes (profiled, --profile) with the seed, and T4-config
        # inference with layers made dense (shipped) beside all 4-bit ("fourbit") on GPU 0; the GPU smoke's
        # killed/resumed and time-budget runs as a T4 runs them (compiled, checkpointed, fp16) on GPU 1
  CUDA_VISIBLE_DEVICES=1 timeout $(( ${DEADLINE:-470} + 60 )) python3 bench/gpu_smoke.py --out "$OUT/smoke" \
    --only-resume --t4 > "$OUT/smoke.log" 2>&1 && echo "smoke rc 0" >> "$OUT/smoke.log" || echo "smoke rc $?" >> "$OUT/smoke.log" &
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  CUDA_VISIBLE_DEVICES=0 TORCH_LOGS=recompiles python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-470}" \
    --out "$OUT/gpu0" ${PROFILE---profile} --t4-infer-extra "${T4EXTRA:-fourbit}" \
    --tasks "${TASKS:-seed_bf16_cap,infer_t4_cap,kag_bf16_cap,kag_t4_cap}" > "$OUT/gpu0.log" 2>&1
  wait
  grep -c "Recompiling" "$OUT/gpu0.log"
  grep -v "^{'loss'\|Loading weights\|__recompiles" "$OUT/gpu0.log" | grep "made dense\|tok/s\|x[0-9]\|ERROR\|FAIL" | tail -24
  grep "SMOKE\|Error\|smoke rc\|^resume " "$OUT/smoke.log" | cut -c1-700 | tail -14
  ;;
fifth2)  # fifth measurement, call 3: the shipped 16 GB bf16 recipe beside the same with the NF4 scales double-quantised
         # (GPU 0); T4-config inference as shipped beside 12 instead of 11 GiB for the model, then the T4 recipe (GPU 1)
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  CUDA_VISIBLE_DEVICES=0 python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-470}" --out "$OUT/gpu0" \
    --tasks seed_bf16_cap,kag_bf16_cap,kag_bf16_cap_nested > "$OUT/gpu0.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=1 python3 bench/gpu16.py --phase one --deadline-s "${DEADLINE:-470}" --out "$OUT/gpu1" \
    --t4-infer-extra mem12 --tasks infer_t4_cap,seed_bf16_cap,kag_t4_cap > "$OUT/gpu1.log" 2>&1 &
  wait
  for g in gpu0 gpu1; do grep -v "^{'loss'\|Loading weights" "$OUT/$g.log" | grep "made dense\|tok/s\|x[0-9]\|ERROR\|FAIL" | tail -12; done
  ;;
sixth)  # sixth measurement (one H200): T4-config inference with the pooled top layer (shipped) beside the whole top
        # layer ("nopool"), each against the seed in the same process; then the seed and the shipped recipe again
        # on twice the rows (a longer, steadier measurement), in a fresh process
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  echo "prep done at ${SECONDS}s"
  python3 bench/gpu16.py --phase one --deadline-s 260 --out "$OUT/a" --t4-infer-extra "${T4EXTRA:-nopool}" \
    --tasks infer_t4_cap > "$OUT/a.log" 2>&1
  echo "a done at ${SECONDS}s"
  python3 bench/gpu16.py --phase one --deadline-s $(( ${DEADLINE:-560} - SECONDS )) --out "$OUT/b" --t4-infer-extra "" \
    --infer-rows "${ROWS_B:-400}" --tasks infer_t4_cap > "$OUT/b.log" 2>&1
  echo "b done at ${SECONDS}s"
  for g in a b; do grep -v "^{'loss'\|Loading weights" "$OUT/$g.log" | grep "made dense\|tok/s\|x[0-9]\|ERROR\|FAIL\|Error" | tail -10; done
  ;;
tasks)  # one GPU: the checkpoint, then the tasks in TASKS (comma-separated, in that order) within DEADLINE seconds
        # (sixth measurement: the shipped 16 GB and T4 recipes in one call, the big card in the next)
  python3 bench/gpu16.py --phase one --tasks none --out "$OUT/prep" > "$OUT/prep.log" 2>&1 || tail -20 "$OUT/prep.log"
  echo "prep done at ${SECONDS}s"
  TORCH_LOGS=recompiles python3 bench/gpu16.py --phase one --deadline-s $(( ${DEADLINE:-560} - SECONDS )) \
    --out "$OUT/run" --t4-infer-extra "${T4EXTRA:-}" --tasks "$TASKS" > "$OUT/run.log" 2>&1
  echo "run done at ${SECONDS}s"; grep -c "Recompiling" "$OUT/run.log"
  grep -v "^{'loss'\|Loading weights\|__recompiles" "$OUT/run.log" | grep "made dense\|pooled\|tok/s\|x[0-9]\|ERROR\|FAIL\|Error\|deadline" | tail -24
  ;;
two)
  python3 bench/gpu16.py --phase two --ddp-rows "${DDP_ROWS:-6}" --deadline-s "${DEADLINE:-400}" --out "$OUT/two" \
    --multi-infer "${MULTI:-t4,big}" > "$OUT/two.log" 2>&1; grep -v "^{'loss'\|Loading weights" "$OUT/two.log" | tail -20
  [ "${DDP_ROWS:-6}" = 0 ] || timeout $(( 575 - SECONDS )) python3 bench/gpu16.py --phase ddp --ddp-rows 24 --out "$OUT/ddp24" \
    > "$OUT/ddp24.log" 2>&1; tail -8 "$OUT/ddp24.log"
  ;;
esac
rm -rf "$OUT"/*/smoke/tiny "$OUT"/smoke/tiny "$OUT"/smoke/comp 2>/dev/null
true
