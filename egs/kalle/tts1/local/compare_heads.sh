#!/usr/bin/env bash
# Compare the LM output heads on equal footing: KALL-E's next-distribution head (gaussian_kl, the default), MELLE's
# (melle, arXiv 2407.08551), SLED's energy distance (energy_distance, arXiv 2505.13181) and a mixture of Gaussians
# with KALL-E's KL (gaussian_mixture). Run from the recipe dir
# after stages 1-5, which every head shares (data, token list, Flow-VAE, latents):
#
#   ./run.sh --stop_stage 5
#   local/compare_heads.sh                                    # mini configs, CPU
#   local/compare_heads.sh --size paper --run_args "--ngpu 8 --dataset ljspeech --corpus_dir /data/LJSpeech-1.1 \
#       --codec_config conf/tuning/train_flowvae_paper.yaml"  # the options stages 1-5 ran with
#
# Per head, run.sh stages 6-9 (LM, pack, decode, score) with conf/tuning/train_kalle_<size>[_<head>].yaml and
# --lm_tag <tag_prefix>_<size>_<head> and --inference_tag <inference_tag>, so the heads share latents, backbone size,
# decoding and scoring and differ only in the head. Then espnet_kalle.recipe.compare merges their scoring into <compare_dir>/RESULTS.md: one row per
# head (WER, SIM, MCD, DNSMOS, RTF, parameters). Finished stages are skipped, as in kalle.sh.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}) $*" >&2; }

heads="gaussian_kl melle energy_distance gaussian_mixture"   # heads to compare (espnet_kalle.lm.heads.HEADS)
size=mini               # LM configs: conf/tuning/train_kalle_<size>.yaml (gaussian_kl), ..._<size>_<head>.yaml
tag_prefix=heads        # LM experiments: <expdir>/lm_<tag_prefix>_<size>_<head>
stage=6                 # run.sh stages run per head (1-5 are shared: run them once beforehand)
stop_stage=9
recipe=./run.sh         # the script stages 1-5 ran with (its defaults apply to every head)
run_args=""             # more options for every head's run.sh, e.g. "--ngpu 2" (the ones stages 1-5 ran with)
lm_args=""              # more tts_train options for every head, e.g. "--max_epoch 10"
expdir=exp
dumpdir=dump
train_set=train
test_sets=test
system=clone            # decode system of the comparison table (clone, ttt, preset_<voice>)
decode_config=conf/decode_compare_heads.yaml  # stage 8 systems per head (conf/decode.yaml decodes them all)
inference_tag=compare_heads  # decoding dirs: <expdir>/lm_<tag>/<inference_tag>/<test set>
compare_dir=""          # where RESULTS.md goes (default: <expdir>/compare_heads)
dry_run=false           # print the commands (each head's run.sh runs with --dry_run true) instead of running them
python=python3

help_message="Usage: $0 [options]    (see the option list at the top of $0)
  e.g. $0 --heads 'gaussian_kl melle' --lm_args '--max_epoch 10' --dry_run true"

log "$0 $*"
[ -f kalle.sh ] && [ -f path.sh ] || { echo "$0: run me from the recipe dir (egs/kalle/tts1)" >&2; exit 2; }
. ./path.sh
. utils/parse_options.sh
if (( $# > 0 )); then log "unexpected argument(s): $*"; echo "${help_message}" >&2; exit 2; fi
compare_dir="${compare_dir:-${expdir}/compare_heads}"

# Print a command so that it can be pasted (as kalle.sh's run does).
trace() { printf '+' >&2; printf ' %q' "$@" >&2; echo >&2; }

lm_config_of() {  # lm_config_of <head>: the recipe config of one head at --size
    if [ "$1" = gaussian_kl ]; then echo "conf/tuning/train_kalle_${size}.yaml"
    else echo "conf/tuning/train_kalle_${size}_$1.yaml"; fi
}
lm_tag_of() { echo "${tag_prefix}_${size}_$1"; }

[ -n "${heads// /}" ] || { log "--heads is empty"; exit 2; }
for head in ${heads}; do  # fail before any training, not after the first head
    [ -f "$(lm_config_of "${head}")" ] || { log "no config for head ${head}: $(lm_config_of "${head}")"; exit 2; }
done
# Without the latents of stages 1-5, the first head's stage 6 stops before training (kalle.sh checks them).

for head in ${heads}; do
    log "head ${head}: $(lm_config_of "${head}") -> ${expdir}/lm_$(lm_tag_of "${head}") (stages ${stage}-${stop_stage})"
    cmd=("${recipe}" --stage "${stage}" --stop_stage "${stop_stage}" --lm_config "$(lm_config_of "${head}")"
         --lm_tag "$(lm_tag_of "${head}")" --expdir "${expdir}" --dumpdir "${dumpdir}" --train_set "${train_set}"
         --test_sets "${test_sets}" --decode_config "${decode_config}" --inference_tag "${inference_tag}"
         --dry_run "${dry_run}")
    [ -z "${lm_args}" ] || cmd+=(--lm_args "${lm_args}")
    # shellcheck disable=SC2206
    cmd+=(${run_args})
    trace "${cmd[@]}"
    "${cmd[@]}"  # a dry run reaches run.sh too, which then prints its stages' commands
done

if (( stop_stage >= 9 )); then
    log "Merging the scoring of ${heads// /, } -> ${compare_dir}/RESULTS.md"
    # shellcheck disable=SC2206
    merge=("${python}" -m espnet_kalle.recipe.compare --system "${system}" --out "${compare_dir}/RESULTS.md"
           --inference_tag "${inference_tag}" --test_sets ${test_sets})
    for head in ${heads}; do merge+=(--exp "${head}=${expdir}/lm_$(lm_tag_of "${head}")"); done
    trace "${merge[@]}"
    if [ "${dry_run}" = false ]; then
        "${merge[@]}"
        log "results: ${compare_dir}/RESULTS.md"
    fi
fi
log "Successfully finished$( [ "${dry_run}" = true ] && echo ' (dry run)')"
