#!/usr/bin/env bash
# The main job of README.md: data -> schedules -> forward process, with pictures, into $OUT.
set -euo pipefail
D=${DDPMCTL:-ddpmctl}
OUT=${OUT:-demo}
mkdir -p "$OUT"
$D make-data triangles --n 10000 --seed 0 -o "$OUT/triangles.npy" --preview "$OUT/triangles.png"
$D schedule linear cosine wave power --plot "$OUT/schedules.png"
$D schedule linear -o "$OUT/betas.npy"
$D noise "$OUT/triangles.npy" --schedule "$OUT/betas.npy" --t 0,50,100,250,500,750,999 -o "$OUT/forward.png"
echo "demo: pictures in $OUT/" >&2
