#!/usr/bin/env bash
# Figure 1 and the TRADES frontier on real Fashion-MNIST at a scale a 2-core CPU finishes in
# about an hour (what docs/reproduction.md reports), then the report. The full-size specs,
# shrunk only with --set (nothing here changes what they measure):
#
#   training     10,000 of the 60,000 training images; 5 epochs (specs: 30) of Adam 1e-3 with a
#                cosine schedule, batch 128; training attack 5 steps of 2.5 * eps / 5 (specs:
#                40), eps ramped up over the first epoch (specs: 2).
#   PGD sweep    l_inf eps_train 0, 0.1, 0.2 and l_2 1, 2 (specs: also 0.05, 0.15, 0.5, 1.5).
#   TRADES       beta 0.5, 1, 3, 6 at l_inf 0.1 (specs: also 0.1 and 10), 5 KL-PGD steps.
#   evaluation   2,000 of the 10,000 test images; PGD-20 (specs: PGD-100) at l_inf 0.1, 0.2 and
#                l_2 1, 2 for every model; validity checks off.
#   AutoAttack   (standard: APGD-CE, APGD-T, FAB-T, Square; 100 iterations, 9 targets, 5,000
#                queries, as the reference) beside PGD-20, on the first 200 of those test
#                images, as evaluate runs of the trained models: at l_inf 0.1 for the standard,
#                l_inf and TRADES models, at l_2 1 for the standard and l_2 models.
#
#   specs/paper/fashion_reduced_scale.sh pgd | trades | autoattack-pgd | autoattack-trades
#   specs/paper/fashion_reduced_scale.sh report [DIR] | all
#
# pgd and trades are independent: run them in two shells (one torch thread each) to use both
# cores, then autoattack-pgd and autoattack-trades the same way. Safe to run again after an interruption: `robustlab run`
# skips cells that already succeeded (`robustlab resume RUN` continues one that was cut off).
set -euo pipefail
cd "$(dirname "$0")/../.."
robustlab=${ROBUSTLAB:-.venv/bin/robustlab}
python=${PYTHON:-.venv/bin/python}

scale="--set dataset.train_subset=10000 --set dataset.test_subset=2000 --set training.epochs=5
  --set evaluation.checks=false --set checkpoint_every=1"
pgd20='[{kind: pgd, norm: linf, eps: 0.1, steps: 20}, {kind: pgd, norm: linf, eps: 0.2, steps: 20},
  {kind: pgd, norm: l2, eps: 1.0, steps: 20}, {kind: pgd, norm: l2, eps: 2.0, steps: 20}]'

prepare() {
  $robustlab db upgrade
  $robustlab data fetch fashion_mnist
}

pgd() {
  # shellcheck disable=SC2086  # $scale is a list of options
  $robustlab run specs/paper/e2_fig1_fashion_mnist.yaml $scale --set "evaluation.attacks=$pgd20" \
    --set 'sweep.adversary=[{method: pgd, norm: linf, eps: 0},
      {method: pgd, norm: linf, eps: 0.1, steps: 5, ramp_epochs: 1},
      {method: pgd, norm: linf, eps: 0.2, steps: 5, ramp_epochs: 1},
      {method: pgd, norm: l2, eps: 1.0, steps: 5, ramp_epochs: 1},
      {method: pgd, norm: l2, eps: 2.0, steps: 5, ramp_epochs: 1}]'
}

trades() {
  # shellcheck disable=SC2086
  $robustlab run specs/paper/e2_tradeoff_trades_fashion_mnist.yaml $scale \
    --set "evaluation.attacks=$pgd20" --set adversary.steps=5 --set adversary.ramp_epochs=1 \
    --set 'sweep.adversary.beta=[0.5, 1, 3, 6]'
}

# The newest succeeded run of each cell of EXPERIMENT trained at NORM (the PGD sweep's standard
# model too), as a YAML list of sources.
sources_of() {
  $robustlab runs --experiment "$1" --status succeeded --limit 0 --format json | $python -c '
import json, sys
norm, found = sys.argv[1], {}
for run in json.load(sys.stdin):  # newest first
    params = run["params"]
    adversary = params.get("adversary", {})
    if "adversary.beta" in params and norm == "linf":
        found.setdefault(("beta", params["adversary.beta"]), run["id"])
    elif adversary.get("norm") == norm or float(adversary.get("eps", 1)) == 0:
        found.setdefault(("eps", float(adversary.get("eps", 0))), run["id"])
print("[" + ", ".join(f"{{run: {found[key]}}}" for key in sorted(found)) + "]")' "$2"
}

# AutoAttack and PGD-20 at RADIUS of NORM on the models SOURCES.
attack_models() {
  $robustlab run specs/paper/e2_autoattack_fashion_mnist.yaml --set evaluation.subset=200 \
    --set "evaluation.attacks=[{kind: pgd, norm: $1, eps: $2, steps: 20},
      {kind: autoattack, norm: $1, eps: $2}]" --set "sweep.source=$3"
}

autoattack_pgd() {
  attack_models linf 0.1 "$(sources_of e2_fig1_fashion_mnist linf)"
  attack_models l2 1.0 "$(sources_of e2_fig1_fashion_mnist l2)"
}

autoattack_trades() {
  attack_models linf 0.1 "$(sources_of e2_tradeoff_trades_fashion_mnist linf)"
}

report() {
  $robustlab report --out "${1:-docs/reproduction}" --markdown "${1:-docs/reproduction}.md" \
    --experiment e2_fig1_fashion_mnist --experiment e2_tradeoff_trades_fashion_mnist \
    --experiment e2_autoattack_fashion_mnist
}

case "${1:-all}" in
  pgd) prepare; pgd ;;
  trades) prepare; trades ;;
  autoattack-pgd) autoattack_pgd ;;
  autoattack-trades) autoattack_trades ;;
  report) report "${2:-}" ;;
  all) prepare; pgd; trades; autoattack_pgd; autoattack_trades; report "${2:-}" ;;
  *) echo "usage: $0 pgd | trades | autoattack-pgd | autoattack-trades | report [DIR] | all" >&2
     exit 2 ;;
esac
