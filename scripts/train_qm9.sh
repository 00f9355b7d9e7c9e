#!/usr/bin/env bash
# Train the registry's ten QM9 networks (5 architectures x {gap, U0}) into checkpoints/qm9/ARCH-TARGET/.
#
#   scripts/train_qm9.sh gpu   the full protocol on CUDA: all 110,000 training molecules, the whole
#                              10,000 / 10,831 validation and test sets, up to 60 min per network
#   scripts/train_qm9.sh cpu   the run committed on 2026-11-26 on a 2-core CPU: 50,000 training molecules,
#                              1,000 validation and the first 2,000 test molecules, 12 min per network,
#                              MACE at max_ell 2 / correlation 2 (correlation 3 costs 3 s a step on one core),
#                              two networks at a time on one thread each
#   scripts/train_qm9.sh cpu-evolution
#                              the run committed on 2026-11-30 for the training-evolution figure: PaiNN and MACE
#                              on both targets, as `cpu` but 20 min per network and 6 snapshots, the gap and U0
#                              networks of one architecture side by side (they share the machine's load alike)
#
# Every run writes model.pt + manifest.json (with its command line), snapshots/stepSSSSSSS.pt (the averaged weights
# at 1/4, 2/4, 3/4 and the end of the budget; --snapshots K to change) and state.pt (git-ignored), with which the
# same command plus --resume and a new --max-minutes continues training; logs go to build/train-logs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode=${1:?usage: scripts/train_qm9.sh cpu|cpu-evolution|gpu}
CPD=${CPD:-.venv/bin/cpd}
mkdir -p build/train-logs

run() {  # arch target [extra options...]
  local arch=$1 target=$2; shift 2
  echo "$(date -u +%H:%M) start $arch $target"
  "$CPD" train --arch "$arch" --target "$target" "$@" > "build/train-logs/$arch-$target.log" 2>&1 \
    || echo "FAILED: $arch $target (see build/train-logs/$arch-$target.log)"
  echo "$(date -u +%H:%M) done  $arch $target: $(tail -n 1 "build/train-logs/$arch-$target.log")"
}

case $mode in
  gpu)
    for arch in schnet dimenet++ painn visnet mace; do
      for target in gap U0; do
        run "$arch" "$target" --device cuda --max-minutes 60 --batch-size 32
      done
    done
    ;;
  cpu)
    export OMP_NUM_THREADS=1
    common=(--device cpu --threads 1 --max-minutes 12 --n-train 50000 --n-val 1000 --n-test 2000)
    mace=(--hparams '{"max_ell": 2, "correlation": 2}')
    ( run dimenet++ gap "${common[@]}"; run dimenet++ U0 "${common[@]}"; run schnet gap "${common[@]}"
      run schnet U0 "${common[@]}"; run painn gap "${common[@]}" ) &
    ( run visnet gap "${common[@]}"; run visnet U0 "${common[@]}"; run mace gap "${common[@]}" "${mace[@]}"
      run mace U0 "${common[@]}" "${mace[@]}"; run painn U0 "${common[@]}" ) &
    wait
    ;;
  cpu-evolution)
    export OMP_NUM_THREADS=1
    common=(--device cpu --threads 1 --max-minutes 20 --n-train 50000 --n-val 1000 --n-test 2000 --snapshots 6)
    ( run painn gap "${common[@]}" ) & ( run painn U0 "${common[@]}" ) & wait
    mace=(--hparams '{"max_ell": 2, "correlation": 2}')
    ( run mace gap "${common[@]}" "${mace[@]}" ) & ( run mace U0 "${common[@]}" "${mace[@]}" ) & wait
    ;;
  *) echo "usage: scripts/train_qm9.sh cpu|cpu-evolution|gpu" >&2; exit 2 ;;
esac
