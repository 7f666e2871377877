#!/usr/bin/env bash
# The main job of README.md: 10,000 triangles -> train a small U-Net -> 64 samples with the
# stochastic DPM-Solver++(2M) SDE sampler (20 steps, 20 NFE) -> sample grid, loss curve, FID,
# clean-triangle fraction; also 64 samples of the ODE (DPM-Solver++(3M), 20 steps) alone and
# autoguided by a snapshot (40 NFE) for comparison. About 14.5 minutes on 2 CPU cores (training
# 830 s). Everything goes into $OUT.
set -euo pipefail
D=${DDPMCTL:-ddpmctl}
OUT=${OUT:-demo}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=$(dirname "$(command -v "$D")")/python
[ -x "$PY" ] || PY=python3
CONFIG=${CONFIG:-$HERE/triangles/demo.yaml}
ncpu=$(nproc --all 2>/dev/null || echo 1)
echo "demo: $ncpu cores, load $(cut -d' ' -f1-3 /proc/loadavg), OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}" >&2
start=$(date +%s)
mkdir -p "$OUT"
$D make-data triangles --n 10000 --seed 0 -o "$OUT/triangles.npy" --preview "$OUT/triangles.png"
# Training runs for TRAIN_SECONDS of wall time (--time-limit; or the config's steps, if they come
# first), with the learning rate decaying to 0 over that time: what a 2-core CPU affords.
TRAIN_SECONDS=${TRAIN_SECONDS:-830}
# SEED: the training's seed (initial weights, data order, noise); the data are the same in every run.
SEED=${SEED:-0}
# --snapshot 0.2 also keeps the EMA model at 20% of the run: the guide of the guided ODE below.
$D train "$OUT/triangles.npy" --config "$CONFIG" --time-limit "$TRAIN_SECONDS" --snapshot 0.2 --seed "$SEED" --force --quiet -o "$OUT/ckpt"
echo "demo: trained $(tail -n 1 "$OUT/ckpt/metrics.jsonl")" >&2
$PY "$HERE/plot_loss.py" "$OUT/ckpt/metrics.jsonl" -o "$OUT/loss.png"
# The demo's sampler: DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion's sample_dpmpp_2m_sde),
# 20 steps on the Karras grid, 20 NFE. Chosen on validation samples (docs/demo.md, "The sampler"):
# of the samplers at <= 20 NFE whose clean triangles spread over sizes and orientations like the
# data's, it drew the most clean ones. SAMPLER=... STEPS=... try another.
SAMPLER=${SAMPLER:-dpm++2m-sde}
STEPS=${STEPS:-20}
$D sample "$OUT/ckpt" -n 64 --sampler "$SAMPLER" --steps "$STEPS" --seed 1 -o "$OUT/samples.npy" --preview "$OUT/samples.png"
# For comparison: the ODE (DPM-Solver++(3M), 20 steps: what `ddpmctl sample` does by default) alone,
# 20 NFE, and with autoguidance (Karras et al. 2024) by the run's EMA snapshot at 20% of training
# (train --snapshot 0.2) at w = 4, 40 NFE: the demo's sampler until December 2026.
$D sample "$OUT/ckpt" -n 64 --sampler ode --steps 20 --seed 1 -o "$OUT/samples-ode.npy" --preview "$OUT/samples-ode.png"
$D sample "$OUT/ckpt" -n 64 --sampler ode --steps 20 --seed 1 --guide "$OUT/ckpt/snapshot-20.safetensors" \
    --guidance 4 -o "$OUT/samples-guided.npy" --preview "$OUT/samples-guided.png"
# FID of the 64 samples against the 10,000 training images. Default: on raw pixel values
# (--features raw), seconds on a CPU. FID_FEATURES=inception uses the FID Inception-v3 (needs
# pytorch-fid's weights, nothing is downloaded; about 57 TFLOP for 10,064 images at 299x299:
# far beyond the demo's 15 minutes on 2 CPU cores, fine on a GPU).
FID_FEATURES=${FID_FEATURES:-raw}
$D fid "$OUT/samples.npy" "$OUT/triangles.npy" --features "$FID_FEATURES" --quiet > "$OUT/fid.txt" 2> "$OUT/fid.err" \
    || { cat "$OUT/fid.err" >&2; exit 1; }
echo "FID ($FID_FEATURES features, 64 samples vs 10,000 training images; biased upward with 64 samples): $(head -n 1 "$OUT/fid.txt")"
{ echo "$SAMPLER, $STEPS steps (samples.png):"
  $PY "$HERE/../benchmarks/demo_quality.py" "$OUT/samples.npy" --data "$OUT/triangles.npy" --n-data 200
  echo "ODE, DPM-Solver++(3M), 20 steps, 20 NFE (samples-ode.png):"
  $PY "$HERE/../benchmarks/demo_quality.py" "$OUT/samples-ode.npy"
  echo "ODE, DPM-Solver++(3M), 20 steps, autoguidance w=4, 40 NFE (samples-guided.png):"
  $PY "$HERE/../benchmarks/demo_quality.py" "$OUT/samples-guided.npy"; } | tee "$OUT/quality.txt"
echo "demo: $(( $(date +%s) - start )) s; samples $OUT/samples.png, loss $OUT/loss.png, data $OUT/triangles.png" >&2
