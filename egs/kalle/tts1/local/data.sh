#!/usr/bin/env bash
# Stage 1 of the recipe: make data/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt} (sorted, speaker-prefixed ids).
# Run from the recipe dir (egs/kalle/tts1), as ESPnet's local/data.sh are. Installs nothing: when a tool or
# corpus is missing it says what to install/download and exits non-zero.
#
#   local/data.sh                                   # mini: synthesised with flite (needs: flite sox wordnet-base)
#   local/data.sh --dataset mini --num_sentences 300 --voices slt,rms --nj 2
#   local/data.sh --dataset mini --num_sentences 60000 --sources examples,glosses   # ~50 h, beyond WordNet's examples
#   local/data.sh --dataset mini --voices default,mbrola   # + MBROLA voices (non-commercial licence)
#   local/data.sh --dataset ljspeech   --corpus_dir /data/LJSpeech-1.1
#   local/data.sh --dataset libritts_r --corpus_dir /data/LibriTTS_R
#   local/data.sh --dataset vctk       --corpus_dir /data/VCTK-Corpus-0.92
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0")) $*"; }

dataset=mini            # mini | ljspeech | libritts_r | vctk
corpus_dir=             # unpacked corpus (ljspeech, libritts_r, vctk)
nj=2                    # parallel synthesis jobs (mini)
datadir=data            # output: ${datadir}/{train_set,dev_set,test_set}
train_set=train
dev_set=dev
test_set=test
# mini only (see espnet_kalle/recipe/mini_corpus.py)
mini_dir=downloads/mini # where the synthesised WAVs go
num_sentences=3300      # distinct sentences (each read by voices_per_sentence voices)
num_dev=50              # dev sentences
num_test=50             # test sentences
voices=default          # comma-separated voice names; "default" = 8 flite voices, "mbrola" = 4 MBROLA voices
voices_per_sentence=1
seed=1
sources=examples        # WordNet sentence sources in sampling order: examples (~33k), examples,glosses (~132k)
text_file=              # one sentence per line, instead of WordNet
# libritts_r / vctk only
libritts_train_subsets=train-clean-100,train-clean-360
vctk_mic=mic1
python=python3

help_message="Usage: $0 [--dataset mini|ljspeech|libritts_r|vctk] [--corpus_dir DIR] [--nj N] [options]
Options (default):
  --dataset (${dataset}) --corpus_dir (none) --nj (${nj}) --datadir (${datadir})
  --train_set/--dev_set/--test_set (${train_set}/${dev_set}/${test_set})
  mini: --mini_dir (${mini_dir}) --num_sentences (${num_sentences}) --num_dev (${num_dev}) --num_test (${num_test})
        --voices (${voices}) --voices_per_sentence (${voices_per_sentence}) --seed (${seed})
        --sources (${sources}) --text_file (none)
  libritts_r: --libritts_train_subsets (${libritts_train_subsets});  vctk: --vctk_mic (${vctk_mic})"

recipe_dir="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck disable=SC1091
. "${recipe_dir}/utils/parse_options.sh"
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    exit 1
fi
# shellcheck disable=SC1091
[ -f "${recipe_dir}/path.sh" ] && . "${recipe_dir}/path.sh"
export LC_ALL=C

# Print the apt command for each missing tool and fail (we never install anything ourselves).
require_tools() {
    local missing=() t
    for t in "$@"; do command -v "${t}" >/dev/null 2>&1 || missing+=("${t}"); done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "ERROR: missing tool(s): ${missing[*]}. Install them with:" >&2
        echo "  sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
}

case "${dataset}" in
    mini)
        require_tools flite sox
        if [[ ",${voices}," == *,mbrola,* || ",${voices}," == *,mb_* ]]; then
            command -v espeak-ng >/dev/null 2>&1 || {
                echo "ERROR: MBROLA voices need espeak-ng and mbrola. Install them with:" >&2
                echo "  sudo apt-get install espeak-ng mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1" >&2
                echo "  (mbrola is in Debian contrib, its voices in non-free: enable those components first;" >&2
                echo "   the MBROLA voices are licensed for non-commercial, non-military use only)" >&2
                exit 1
            }
        fi
        if [ -z "${text_file}" ] && [ ! -f /usr/share/wordnet/data.noun ]; then
            echo "ERROR: the mini corpus reads its sentences from WordNet. Install it with:" >&2
            echo "  sudo apt-get install wordnet-base" >&2
            echo "  (or pass --text_file FILE with one English sentence per line)" >&2
            exit 1
        fi
        log "building the mini corpus in ${mini_dir} (nj=${nj})"
        extra=()
        [ -n "${text_file}" ] && extra+=(--text_file "${text_file}")
        ${python} -m espnet_kalle.recipe.mini_corpus \
            --out_dir "${mini_dir}" --data_dir "${datadir}" \
            --num_sentences "${num_sentences}" --num_dev "${num_dev}" --num_test "${num_test}" \
            --voices "${voices}" --voices_per_sentence "${voices_per_sentence}" --seed "${seed}" \
            --sources "${sources}" --nj "${nj}" --train_set "${train_set}" --dev_set "${dev_set}" --test_set "${test_set}" \
            "${extra[@]}"
        ;;
    ljspeech|libritts_r|vctk)
        log "preparing ${dataset} from ${corpus_dir:-<no --corpus_dir>}"
        ${python} -m espnet_kalle.recipe.corpora --dataset "${dataset}" --corpus_dir "${corpus_dir}" \
            --data_dir "${datadir}" --train_set "${train_set}" --dev_set "${dev_set}" --test_set "${test_set}" \
            --libritts_train_subsets "${libritts_train_subsets}" --vctk_mic "${vctk_mic}"
        ;;
    *)
        echo "ERROR: unknown --dataset '${dataset}' (mini, ljspeech, libritts_r or vctk)" >&2
        exit 1
        ;;
esac

log "done: ${datadir}/{${train_set},${dev_set},${test_set}}"
