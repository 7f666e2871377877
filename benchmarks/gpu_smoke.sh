#!/usr/bin/env bash
# The CUDA paths end to end, in one command, for the first machine with a GPU:
#
#     bash benchmarks/gpu_smoke.sh [OUT_DIR]        # DDPMCTL=path/to/ddpmctl to use another install
#
# bf16 autocast + channels_last + torch.compile in training (200 steps), pinned-memory batches,
# sampling (ODE, DDPM, and a compiled run whose last batch is padded), FID (raw features on the
# GPU), restoration (DPS takes gradients through the network), and, with two or more GPUs, torchrun with nccl. Each check prints PASS or FAIL
# with its log file; the script exits 1 if any failed. It downloads nothing.
set -uo pipefail
OUT=${1:-gpu-smoke}
D=${DDPMCTL:-ddpmctl}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
failed=0

check() {  # check NAME COMMAND...: run it, log to OUT/NAME.log, print PASS/FAIL
    local name=$1
    shift
    if "$@" > "$OUT/$name.log" 2>&1; then
        echo "PASS  $name"
    else
        echo "FAIL  $name (see $OUT/$name.log)"
        failed=1
    fi
}

if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PY: nothing to check" >&2
    exit 2
fi
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
echo "CUDA devices: $GPUS ($($PY -c "import torch; print(torch.cuda.get_device_name(0), torch.__version__)"))"

check make-data $D make-data triangles --n 2000 --seed 1 -o "$OUT/tri.npy" -q
check train-bf16-compile $D train "$OUT/tri.npy" --device cuda --bf16 --compile --steps 200 --batch 64 \
    --base 16 --save-every 100 -o "$OUT/ck" -q --force
check train-resume $D train --resume "$OUT/ck" --steps 220 -q
check sample-ode $D sample "$OUT/ck" --device cuda --sampler ode -n 64 -o "$OUT/ode.npy" -q
check sample-ddpm $D sample "$OUT/ck" --device cuda --sampler ddpm --steps 50 -n 64 -o "$OUT/ddpm.png" -q
check sample-compile $D sample "$OUT/ck" --device cuda --compile --sampler dpm++2m-sde --steps 20 -n 100 --batch 64 \
    -o "$OUT/compiled.npy" -q
check fid-raw $D fid "$OUT/ode.npy" "$OUT/tri.npy" --device cuda --features raw -q
check degrade $D degrade "$OUT/tri.npy" --task inpaint --box 8,8,12,12 --seed 2 -o "$OUT/y.npy"
check restore-dps $D restore "$OUT/ck" "$OUT/y.npy" --device cuda --method dps --steps 50 -o "$OUT/r.npy" -q
check restore-default $D restore "$OUT/ck" "$OUT/y.npy" --device cuda -o "$OUT/r2.npy" -q
if [ "$GPUS" -ge 2 ]; then
    check torchrun-nccl $PY -m torch.distributed.run --standalone --nproc_per_node=2 -m ddpmctl train \
        "$OUT/tri.npy" --steps 100 --batch 64 --base 16 -o "$OUT/ck-ddp" -q --force
else
    echo "SKIP  torchrun-nccl (one GPU)"
fi
exit $failed
