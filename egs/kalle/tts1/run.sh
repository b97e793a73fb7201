#!/usr/bin/env bash
# KALL-E on the embedded `mini` corpus by default (CPU). Examples:
#   ./run.sh                                   # all stages, mini configs
#   ./run.sh --stage 6 --stop_stage 6          # (re)run one stage; finished work is skipped
#   ./run.sh --dataset ljspeech --corpus_dir /data/LJSpeech-1.1 --ngpu 4 \
#       --codec_config conf/tuning/train_flowvae_paper.yaml --lm_config conf/tuning/train_kalle_paper.yaml
# See kalle.sh --help for every option.
set -euo pipefail
cd "$(dirname "$0")"

./kalle.sh \
    --dataset mini \
    --fs 16000 \
    --token_type char \
    --cleaner tacotron \
    --codec_config conf/train_flowvae.yaml \
    --lm_config conf/train_kalle.yaml \
    --decode_config conf/decode.yaml \
    "$@"
