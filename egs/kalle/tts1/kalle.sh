#!/usr/bin/env bash
# KALL-E recipe driver: numbered stages over Kaldi-style data dirs, in the conventions of ESPnet's
# egs2/TEMPLATE/tts1/tts.sh (our own script: it runs from a pip install, without an ESPnet checkout).
#
#   1 data prep        local/data.sh -> data/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt}
#   2 format           16 kHz mono 16-bit wavs in dump/raw/<set>, train/dev filtered by duration
#   3 token list       ESPnet token list from the train text (espnet2.bin.tokenize_text)
#   4 Flow-VAE         collect_stats + GAN codec training (espnet2.bin.gan_codec_train via espnet2.bin.launch)
#   5 latents          kalle-extract-latents -> dump/latents/<set>/feats.scp ([mu | log_sigma | log-mel])
#   6 LM               collect_stats + TTS training of "kalle" (espnet2.bin.tts_train via espnet2.bin.launch)
#   7 packing          espnet_kalle.pretrained.pack -> a model dir (+ zip) for KalleSynthesizer.from_pretrained
#   8 decoding         test set with preset voices, a reference-prompt clone per speaker, TTT on one prompt
#   9 scoring          kalle-score over every system and the references -> RESULTS.md
#  10 upload           model card + packed model -> exp/hf_<repo> -> Hugging Face Hub (--skip_upload_hf false)
#
# Experiment dirs are named from their config and front end, as tts.sh/codec.sh name theirs (README.md):
#   exp/codec_<codec config>_raw[<codec_args>]                                       (--codec_tag overrides)
#   exp/lm_<lm config>_<codec tag>_<token_type>[_<cleaner>][_<g2p>][<lm_args>]       (--lm_tag overrides)
#   exp/lm_.../<decode config>[<decode_args>]_<lm model>/<test set>                   (--inference_tag overrides)
# so runs that differ in any of these never share (and silently reuse) a finished stage.
# Every stage skips work whose outputs are complete (".done" stamps; delete one to redo that step), and the
# trainers run with --resume true, so "./run.sh --stage N" resumes, also after an interrupted training.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}:${BASH_LINENO[0]}) $*" >&2; }
min() { local a="$1" b; for b in "$@"; do (( b < a )) && a="$b"; done; echo "$a"; }

# ---------------------------------------------------------------------------------------------------- options
stage=1                 # first stage to run
stop_stage=100          # last stage to run
skip_data_prep=false    # skip stages 1-3
skip_train=false        # skip stages 4-6
skip_packing=false      # skip stage 7
skip_eval=false         # skip stages 8-9
skip_upload_hf=true     # skip stage 10 (upload to the Hugging Face Hub)
dry_run=false           # print the commands of the selected stages instead of running them
ngpu=0                  # GPUs per node for training (0: CPU)
train_nthreads=0        # CPU threads of a CPU training run (ngpu=0); 0: every core. path.sh's one thread per
                        # process suits parallel jobs, but one training process on 2 cores steps 1.6x faster on both
num_nodes=1             # nodes for training (>1 needs cmd_backend=slurm or sge, see cmd.sh)
nj=4                    # parallel jobs for formatting, collect_stats and latent extraction
inference_nj=2          # parallel decoding jobs
gpu_inference=false     # extract latents and decode on a GPU (stages 5 and 8 go through cuda_cmd --gpu 1)
python=python3          # the venv's python (path.sh activates it)

dataset=mini            # mini | ljspeech | libritts_r | vctk (local/data.sh)
lang=en                 # language of the corpus (a language code: en, en_US, de, ...): model.yaml, model card
corpus_dir=""           # where the downloaded corpus is (not needed for mini)
local_data_opts=""      # more options for local/data.sh
train_set=train
valid_set=dev
test_sets=test
dumpdir=dump
expdir=exp
fs=16000                # Flow-VAE sample rate
min_wav_duration=0.5    # seconds; shorter train/dev utterances are dropped
max_wav_duration=20     # seconds; longer train/dev utterances are dropped

token_type=char         # ESPnet token type of the LM's text
cleaner=tacotron        # ESPnet text cleaner (none | tacotron | ...)
g2p=none                # with --token_type phn: an ESPnet g2p, e.g. espeak_ng_english_us_vits (espeak-ng from pip)
token_listdir=data/token_list

codec_config=""         # Flow-VAE training config (conf/train_flowvae.yaml)
codec_args=""           # more gan_codec_train options, e.g. "--max_epoch 2"
codec_tag=""            # exp/codec_<tag> (default: <config name>_raw[<codec_args>], as codec.sh)
codec_model=latest.pth  # the codec model file used for latents and packing (ESPnet's latest = last epoch)

lm_config=""            # LM training config (conf/train_kalle.yaml)
lm_args=""              # more tts_train options
lm_tag=""               # exp/lm_<tag> (default: <config name>_<codec tag>_<token_type>[_<cleaner>][_<g2p>][<lm_args>])
lm_model=valid.loss.ave.pth  # the LM model file to pack, as tts.sh's inference_model: ESPnet's average of the
                        # config's keep_nbest_models best-valid epochs, written when the run reaches its --max_epoch
                        # (an unfinished run: latest.pth or <N>epoch.pth)
speaker_mel=auto        # append speaker log-mel to the latents: auto = when the LM config has speaker_conf
use_sid=auto            # pass ESPnet speaker ids (utt2sid -> sids) to the LM: auto = when the LM config has
                        # speaker_reference: other_utterance or continuation_share (both pair one speaker's utterances)
extract_args=""         # more kalle-extract-latents options

num_voices=4            # preset voices picked when packing (pack_args="--voice-candidates N": seeds auditioned)
pack_args=""            # more espnet_kalle.pretrained.pack options
decode_config=""        # conf/decode.yaml
decode_args=""          # more espnet_kalle.recipe.decode options
inference_tag=""        # decoding dir <lm exp>/<tag>/<test set>
                        # (default: <decode config name>[<decode_args>]_<lm model>, as tts.sh)
score_args=""           # more kalle-score options

hf_repo=""              # stage 10: the Hugging Face model repo, <user or org>/<name>
hf_dry_run=false        # stage 10: stage the upload folder (model card + model) and stop before pushing
hf_args=""              # more espnet_kalle.recipe.upload_hf options, e.g. "--license apache-2.0"

help_message="Usage: $0 [options]    (see the option list at the top of $0)
  e.g. $0 --stage 4 --stop_stage 6 --ngpu 2 --codec_config conf/tuning/train_flowvae_paper.yaml"

log "$0 $*"
# The command line, quoted, for the run.sh each experiment dir gets (as tts.sh writes) and the model card.
run_args="$(printf '%q ' "$0" "$@")"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
if (( $# > 0 )); then log "unexpected argument(s): $*"; echo "${help_message}" >&2; exit 2; fi

for v in skip_data_prep skip_train skip_packing skip_eval skip_upload_hf dry_run gpu_inference hf_dry_run; do
    [[ "${!v}" == true || "${!v}" == false ]] || { log "--${v} must be true or false"; exit 2; }
done
[[ "${speaker_mel}" =~ ^(auto|true|false)$ ]] || { log "--speaker_mel must be auto, true or false"; exit 2; }
[[ "${use_sid}" =~ ^(auto|true|false)$ ]] || { log "--use_sid must be auto, true or false"; exit 2; }
(( num_nodes >= 1 && ngpu >= 0 && nj >= 1 && inference_nj >= 1 )) || { log "bad --num_nodes/--ngpu/--nj"; exit 2; }
if [ "${token_type}" = phn ] && [ "${g2p}" = none ]; then
    log "--token_type phn needs a --g2p (e.g. espeak_ng_english_us_vits)"; exit 2
fi
[[ "${train_nthreads}" =~ ^[0-9]+$ ]] || { log "--train_nthreads must be a whole number (0: every core)"; exit 2; }
if (( num_nodes > 1 )) && [[ "${cuda_cmd}" != *slurm.pl* && "${cuda_cmd}" != *queue.pl* ]]; then
    log "--num_nodes ${num_nodes} needs a multi-node launcher: export cmd_backend=slurm or sge (cmd.sh)"; exit 2
fi
for v in codec_config lm_config decode_config; do
    [ -z "${!v}" ] || [ -f "${!v}" ] || { log "--${v} ${!v}: no such file"; exit 2; }
done
"${python}" -c 'import sys; from espnet_kalle.languages import check_lang; check_lang(sys.argv[1])' "${lang}" \
    || { log "--lang ${lang}: expected a language code such as en, en_US or de"; exit 2; }
if [ "${skip_upload_hf}" = false ] && (( stage <= 10 && 10 <= stop_stage )) && [ -z "${hf_repo}" ]; then
    log "stage 10 (--skip_upload_hf false) needs --hf_repo <user or org>/<name>"; exit 2
fi

# ----------------------------------------------------------------------------------- names, as tts.sh names
# Overridden training options become part of a name as in tts.sh ("--max_epoch 2" -> "_max_epoch2").
args_tag() { echo "$1" | sed -e 's/--/_/g' -e 's/[ |=]//g' -e 's:/:_:g'; }
model_tag() { echo "$1" | sed -e 's:/:_:g' -e 's/\.[^.]*$//'; }  # 3epoch.pth -> 3epoch

lm_tts_conf() {  # lm_tts_conf <key[.subkey]>: one tts_conf entry of the LM config, or nothing when missing or empty
    "${python}" - "${lm_config}" "$1" <<'PY'
import sys, yaml
conf = yaml.safe_load(open(sys.argv[1])) if sys.argv[1] else {}
value = conf.get("tts_conf") or {}
for key in sys.argv[2].split("."):
    value = value.get(key) if isinstance(value, dict) else None
print(value if value else "")
PY
}
# Does the LM want speaker log-mel columns next to the latents? (auto: it has a speaker encoder)
use_speaker_mel="${speaker_mel}"
if [ "${speaker_mel}" = auto ]; then
    use_speaker_mel=false; [ -z "$(lm_tts_conf speaker_conf)" ] || use_speaker_mel=true
fi

codec_tag="${codec_tag:-$(basename "${codec_config:-train}" .yaml)_raw$(args_tag "${codec_args}")}"
codec_exp="${expdir}/codec_${codec_tag}"
codec_stats_dir="${expdir}/codec_stats_${fs}"
# The LM's features are the latents of one codec model: its tag (+ the model file when not the last epoch).
feats_tag="${codec_tag}"; [ "${codec_model}" = latest.pth ] || feats_tag+="_$(model_tag "${codec_model}")"
latents_dir="${dumpdir}/latents/${feats_tag}"; [ "${use_speaker_mel}" = true ] && latents_dir+="_mel"
# Token lists and text shapes depend on the cleaner and the g2p too (tts.sh: token_list/<type>[_<cleaner>][_<g2p>]).
token_tag="${token_type}"
[ "${cleaner}" = none ] || token_tag+="_${cleaner}"
[ "${token_type}" = phn ] && token_tag+="_${g2p}"
token_list="${token_listdir}/${token_tag}/tokens.txt"
lm_stats_dir="${expdir}/lm_stats_${latents_dir##*/}_${token_tag}"
lm_tag="${lm_tag:-$(basename "${lm_config:-train}" .yaml)_${feats_tag}_${token_tag}$(args_tag "${lm_args}")}"
lm_exp="${expdir}/lm_${lm_tag}"
# The packed model of one LM model file (tts.sh: <exp>/<exp name>_<model>.zip); decoding of one config and model.
packed_dir="${lm_exp}/packed_$(model_tag "${lm_model}")"
if [ -z "${inference_tag}" ]; then
    inference_tag="$( [ -n "${decode_config}" ] && basename "${decode_config}" .yaml || echo inference)"
    inference_tag+="$(args_tag "${decode_args}")_$(model_tag "${lm_model}")"
fi
hf_dir="${expdir}/hf_${hf_repo//\//_}"

# Latents and decoding on a GPU get one through the scheduler (tts.sh: cuda_cmd --gpu 1), else decode_cmd.
if [ "${gpu_inference}" = true ]; then
    device=cuda; inference_cmd="${cuda_cmd} --gpu 1"
else
    device=cpu; inference_cmd="${decode_cmd} --gpu 0"
fi

# Run a command, or only print it (--dry_run true). Arguments are quoted so the printout can be pasted.
run() {
    printf '+' >&2; printf ' %q' "$@" >&2; echo >&2
    [ "${dry_run}" = true ] || "$@"
}
done_or_dry() { [ "${dry_run}" = false ] && [ -f "$1/.done" ]; }
mark_done() { [ "${dry_run}" = true ] || { mkdir -p "$1"; date > "$1/.done"; }; }
# <dir>/run.sh: this command line from stage <n> on, to resume or redo that experiment (as tts.sh writes).
write_run_sh() {  # write_run_sh <dir> <stage>
    [ "${dry_run}" = true ] && return 0
    mkdir -p "$1"
    # Replaced by a rename, never rewritten in place: this very run may have been started by that run.sh.
    { echo '#!/usr/bin/env bash'; echo '# Written by kalle.sh: run it from the recipe dir; later options override.'
      echo "${run_args}--stage $2 \"\$@\""; } > "$1/run.sh.tmp"
    chmod +x "$1/run.sh.tmp"
    mv -f "$1/run.sh.tmp" "$1/run.sh"
}
want() {  # want <stage> <skip flag>: is the stage selected?
    (( stage <= $1 && $1 <= stop_stage )) && [ "$2" = false ]
}
lm_model_hint="--lm_model; ESPnet writes valid.loss.ave.pth when training reaches --max_epoch, pass --lm_model latest.pth for an unfinished run"
need_file() { [ "${dry_run}" = true ] || [ -e "$1" ] || { log "missing $1 ($2)"; exit 1; }; }

# ---------------------------------------------------------------------------------------- 1. data preparation
if want 1 "${skip_data_prep}"; then
    log "Stage 1: data preparation (${dataset}) -> data/{${train_set},${valid_set},${test_sets// /,}}"
    if done_or_dry data; then
        log "data/ is complete (delete data/.done to prepare it again)"
    else
        [ "${dry_run}" = true ] || [ -x local/data.sh ] || { log "local/data.sh not found"; exit 1; }
        # shellcheck disable=SC2086
        run local/data.sh --dataset "${dataset}" ${corpus_dir:+--corpus_dir "${corpus_dir}"} ${local_data_opts}
        for dset in "${train_set}" "${valid_set}" ${test_sets}; do
            for f in wav.scp text utt2spk spk2utt; do need_file "data/${dset}/${f}" "local/data.sh output"; done
        done
        mark_done data
    fi
fi

# --------------------------------------------------------------------------------------------- 2. formatting
if want 2 "${skip_data_prep}"; then
    log "Stage 2: resample to ${fs} Hz mono 16-bit -> ${dumpdir}/raw; filter ${min_wav_duration}-${max_wav_duration} s"
    for dset in "${train_set}" "${valid_set}" ${test_sets}; do
        out="${dumpdir}/raw/${dset}"
        if done_or_dry "${out}"; then log "${out} is complete"; continue; fi
        filter=()
        # ESPnet filters only the training and validation sets; every test utterance is scored.
        if [ "${dset}" = "${train_set}" ] || [ "${dset}" = "${valid_set}" ]; then
            filter=(--min_seconds "${min_wav_duration}" --max_seconds "${max_wav_duration}")
        fi
        n=$(min "${nj}" "$( [ -f "data/${dset}/wav.scp" ] && wc -l < "data/${dset}/wav.scp" || echo 1)")
        run ${train_cmd} JOB=1:"${n}" "${out}/log/format.JOB.log" \
            "${python}" -m espnet_kalle.recipe.format_data --src "data/${dset}" --dst "${out}" --fs "${fs}" \
            --job JOB --nj "${n}" "${filter[@]}"
        run "${python}" -m espnet_kalle.recipe.format_data --src "data/${dset}" --dst "${out}" --merge "${n}" \
            --fs "${fs}" "${filter[@]}"
        mark_done "${out}"
    done
fi

# -------------------------------------------------------------------------------------------- 3. token list
if want 3 "${skip_data_prep}"; then
    log "Stage 3: ${token_type} token list from ${dumpdir}/raw/${train_set}/text -> ${token_list}"
    if done_or_dry "$(dirname "${token_list}")"; then
        log "${token_list} exists"
    else
        [ "${token_type}" = char ] || [ "${token_type}" = phn ] || {
            log "--token_type ${token_type}: only char and phn token lists are built here"; exit 1; }
        [ "${dry_run}" = true ] || mkdir -p "$(dirname "${token_list}")"
        # ESPnet's layout: <blank> first, <unk> second, <sos/eos> last.
        # Through espnet_kalle.run: no NLTK download at import, and the espeak-ng of the espeakng-loader wheel.
        run "${python}" -m espnet_kalle.run -m espnet2.bin.tokenize_text --token_type "${token_type}" \
            --input "${dumpdir}/raw/${train_set}/text" --output "${token_list}" --field 2- \
            --cleaner "${cleaner}" --g2p "${g2p}" --write_vocabulary true \
            --add_symbol '<blank>:0' --add_symbol '<unk>:1' --add_symbol '<sos/eos>:-1'
        mark_done "$(dirname "${token_list}")"
    fi
fi

# ESPnet distributed training: espnet2.bin.launch picks single-process, multi-GPU DDP (spawned per GPU) or
# multi-node (srun via cmd.sh's slurm.pl) from --ngpu/--num_nodes and passes the matching --dist_* options.
launch() {  # launch <exp dir> <module> <args...>
    local exp="$1" module="$2" threads=() n; shift 2
    if (( ngpu == 0 )); then  # a CPU run: its one process gets the cores (GPU runs keep path.sh's setting)
        n="${train_nthreads}"; (( n > 0 )) || n="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"  # nproc obeys OMP_*
        threads=(env OMP_NUM_THREADS="${n}" MKL_NUM_THREADS="${n}")
    fi
    # SGE job names cannot contain "/" (tts.sh passes the exp name to queue.pl, the log path to the others).
    local jobname="${exp}/train.log"; [[ "${cuda_cmd}" != *queue.pl* ]] || jobname="${exp##*/}"
    run "${threads[@]}" "${python}" -m espnet2.bin.launch --cmd "${cuda_cmd} --name ${jobname}" --log "${exp}/train.log" \
        --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        "${python}" -m espnet_kalle.run -m "${module}" "$@"
}

# Split a Kaldi scp into n files <dir>/<name>.<j> (round robin) for JOB=1:n collect_stats.
split_scp() {  # split_scp <scp> <dir> <n>
    [ "${dry_run}" = true ] && return 0
    mkdir -p "$2"
    awk -v n="$3" -v d="$2" -v b="$(basename "$1")" '{ print > (d "/" b "." ((NR - 1) % n + 1)) }' "$1"
}

# ESPnet's collect_stats in JOB=1:n pieces over the train/valid <scp>, then merged, as ESPnet's recipes do (it
# writes the shape files the trainers' samplers need). <extra args> (the user's --*_args) go last, so they win.
collect_stats() {  # collect_stats <stats dir> <scp dir> <scp name> <module> "<extra args>" <args...>
    local stats_dir="$1" scp_dir="$2" scp="$3" module="$4" extra="$5" n j dset
    shift 5
    n=$(min "${nj}" "$( [ -f "${scp_dir}/${valid_set}/${scp}" ] && wc -l < "${scp_dir}/${valid_set}/${scp}" || echo 1)")
    for dset in "${train_set}" "${valid_set}"; do split_scp "${scp_dir}/${dset}/${scp}" "${stats_dir}/split/${dset}" "${n}"; done
    # shellcheck disable=SC2086
    run ${train_cmd} JOB=1:"${n}" "${stats_dir}/log/stats.JOB.log" \
        "${python}" -m espnet_kalle.run -m "${module}" --collect_stats true --ngpu 0 "$@" \
        --train_shape_file "${stats_dir}/split/${train_set}/${scp}.JOB" \
        --valid_shape_file "${stats_dir}/split/${valid_set}/${scp}.JOB" \
        --output_dir "${stats_dir}/stats.JOB" ${extra}
    run "${python}" -m espnet2.bin.aggregate_stats_dirs \
        $(for j in $(seq "${n}"); do echo --input_dir "${stats_dir}/stats.${j}"; done) \
        --output_dir "${stats_dir}"
    mark_done "${stats_dir}"
}

# -------------------------------------------------------------------------------------------- 4. Flow-VAE
if want 4 "${skip_train}"; then
    log "Stage 4: Flow-VAE (ESPnet GAN codec) collect_stats -> ${codec_stats_dir}, training -> ${codec_exp}"
    [ -n "${codec_config}" ] || { log "--codec_config is required"; exit 2; }
    if ! done_or_dry "${codec_stats_dir}"; then
        collect_stats "${codec_stats_dir}" "${dumpdir}/raw" wav.scp espnet2.bin.gan_codec_train "${codec_args}" \
            --config "${codec_config}" \
            --train_data_path_and_name_and_type "${dumpdir}/raw/${train_set}/wav.scp,audio,sound" \
            --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/wav.scp,audio,sound"
    fi
    if done_or_dry "${codec_exp}"; then
        log "${codec_exp} is trained (delete ${codec_exp}/.done to train more)"
    else
        write_run_sh "${codec_exp}" 4
        # shellcheck disable=SC2086
        launch "${codec_exp}" espnet2.bin.gan_codec_train --config "${codec_config}" \
            --train_data_path_and_name_and_type "${dumpdir}/raw/${train_set}/wav.scp,audio,sound" \
            --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/wav.scp,audio,sound" \
            --train_shape_file "${codec_stats_dir}/train/audio_shape" \
            --valid_shape_file "${codec_stats_dir}/valid/audio_shape" \
            --resume true --output_dir "${codec_exp}" ${codec_args}
        need_file "${codec_exp}/${codec_model}" "--codec_model"
        mark_done "${codec_exp}"
    fi
fi

# Does the LM want speaker ids? (auto: it reads the voice from another utterance of the same speaker)
use_speaker_ids() {
    case "${use_sid}" in
        true|false) echo "${use_sid}" ;;
        auto) if [ "$(lm_tts_conf speaker_reference)" = other_utterance ] \
                 || { [ -n "$(lm_tts_conf continuation_share)" ] && [ -n "$(lm_tts_conf speaker_conf)" ]; }; then
                  echo true
              else
                  echo false
              fi ;;
    esac
}

# ------------------------------------------------------------------------------------------------ 5. latents
if want 5 "${skip_train}"; then
    log "Stage 5: Flow-VAE latents of every set with ${codec_exp}/${codec_model} -> ${latents_dir}"
    mel_flag=()
    [ "${use_speaker_mel}" = true ] && mel_flag=(--speaker-mel)
    for dset in "${train_set}" "${valid_set}" ${test_sets}; do
        out="${latents_dir}/${dset}"
        if done_or_dry "${out}"; then log "${out} is complete"; continue; fi
        # The extractor resumes by itself (complete npy files are kept) and runs --nj worker processes.
        # shellcheck disable=SC2086
        run ${inference_cmd} --num_threads "${nj}" "${out}/log/extract.log" \
            kalle-extract-latents --codec-config "${codec_exp}/config.yaml" \
            --codec-model "${codec_exp}/${codec_model}" --wav-scp "${dumpdir}/raw/${dset}/wav.scp" \
            --out-dir "${out}" --nj "${nj}" --device "${device}" "${mel_flag[@]}" ${extract_args}
        mark_done "${out}"
    done
fi

# -------------------------------------------------------------------------------------------------- 6. LM
if want 6 "${skip_train}"; then
    log "Stage 6: KALL-E LM (ESPnet TTS 'kalle') collect_stats -> ${lm_stats_dir}, training -> ${lm_exp}"
    [ -n "${lm_config}" ] || { log "--lm_config is required"; exit 2; }
    if done_or_dry "${lm_exp}"; then
        log "${lm_exp} is trained (to train more: delete ${lm_exp}/.done, run ${lm_exp}/run.sh --lm_tag ${lm_tag} ...)"
    else
        # Feature width and latent size come from the extracted latents, so the LM always matches its codec.
        odim=ODIM; latent_dim=LATENT_DIM
        if [ "${dry_run}" = false ]; then
            for dset in "${train_set}" "${valid_set}"; do
                need_file "${latents_dir}/${dset}/.done" \
                    "the latents of ${codec_exp}/${codec_model}: run stages 1-5 first"
            done
            odim=$(head -n 1 "${latents_dir}/${train_set}/feats_shape" | cut -d' ' -f2 | cut -d, -f2)
            latent_dim=$("${python}" -c 'import json,sys; print(json.load(open(sys.argv[1]))["latent_dim"])' \
                "${latents_dir}/${train_set}/latents_info.json")
        fi
        data_opts=()
        for pair in "train:${train_set}" "valid:${valid_set}"; do
            split="${pair%%:*}"; dset="${pair#*:}"
            data_opts+=(--"${split}"_data_path_and_name_and_type "${dumpdir}/raw/${dset}/text,text,text"
                        --"${split}"_data_path_and_name_and_type "${latents_dir}/${dset}/feats.scp,speech,npy")
        done
        if [ "$(use_speaker_ids)" = true ]; then
            # ESPnet's layout: spk2sid of the training speakers (0 = unknown), utt2sid per set, read as "sids".
            run "${python}" -m espnet_kalle.recipe.speaker_ids --train "${dumpdir}/raw/${train_set}" \
                --sets "${dumpdir}/raw/${train_set}" "${dumpdir}/raw/${valid_set}"
            for pair in "train:${train_set}" "valid:${valid_set}"; do
                split="${pair%%:*}"; dset="${pair#*:}"
                data_opts+=(--"${split}"_data_path_and_name_and_type "${dumpdir}/raw/${dset}/utt2sid,sids,text_int")
            done
        fi
        common=(--config "${lm_config}" --token_type "${token_type}" --token_list "${token_list}"
                --cleaner "${cleaner}" --g2p "${g2p}" --odim "${odim}" --tts_conf "latent_dim=${latent_dim}"
                --use_preprocessor true "${data_opts[@]}")
        if ! done_or_dry "${lm_stats_dir}"; then
            # Shape files (text tokens, latent frames); the model's feats are not normalised (normalize: null).
            collect_stats "${lm_stats_dir}" "${latents_dir}" feats.scp espnet2.bin.tts_train "${lm_args}" "${common[@]}"
        fi
        if [ "$(lm_tts_conf guided_attention.target)" = durations ]; then
            # Frames per token for the guided heads, from the corpus's phone timings (the diagonal without them).
            run "${python}" -m espnet_kalle.recipe.token_durations \
                --timings "${dumpdir}/raw/${train_set}/phone_timings" \
                --text_shape "${lm_stats_dir}/train/text_shape" --speech_shape "${lm_stats_dir}/train/speech_shape" \
                --utt2num_samples "${dumpdir}/raw/${train_set}/utt2num_samples" --fs "${fs}" \
                --out "${lm_stats_dir}/train/durations"
            common+=(--train_data_path_and_name_and_type "${lm_stats_dir}/train/durations,durations,text_int")
        fi
        write_run_sh "${lm_exp}" 6
        # The model references its Flow-VAE (recipe-relative paths, as ESPnet configs do) so that
        # espnet2.bin.tts_inference can return waveforms.
        # shellcheck disable=SC2086
        launch "${lm_exp}" espnet2.bin.tts_train "${common[@]}" \
            --tts_conf "codec_config=${codec_exp}/config.yaml" --tts_conf "codec_file=${codec_exp}/${codec_model}" \
            --train_shape_file "${lm_stats_dir}/train/text_shape" \
            --train_shape_file "${lm_stats_dir}/train/speech_shape" \
            --valid_shape_file "${lm_stats_dir}/valid/text_shape" \
            --valid_shape_file "${lm_stats_dir}/valid/speech_shape" \
            --fold_length 150 --fold_length 250 \
            --resume true --output_dir "${lm_exp}" ${lm_args}
        need_file "${lm_exp}/${lm_model}" "${lm_model_hint}"
        mark_done "${lm_exp}"
    fi
fi

# --------------------------------------------------------------------------------------------- 7. packing
if want 7 "${skip_packing}"; then
    log "Stage 7: packing ${lm_exp}/${lm_model} + ${codec_exp}/${codec_model} -> ${packed_dir} (+ .zip)"
    if done_or_dry "${packed_dir}"; then
        log "${packed_dir} is packed"
    else
        need_file "${lm_exp}/${lm_model}" "${lm_model_hint}"
        # shellcheck disable=SC2086
        run ${train_cmd} "${lm_exp}/log/pack.log" \
            "${python}" -m espnet_kalle.pretrained.pack --lm-config "${lm_exp}/config.yaml" \
            --lm-model "${lm_exp}/${lm_model}" --codec-config "${codec_exp}/config.yaml" \
            --codec-model "${codec_exp}/${codec_model}" --out "${packed_dir}" --voices "${num_voices}" \
            --name "kalle-${dataset}-${lm_tag}" --lang "${lang}" ${pack_args}
        # ESPnet ships packed models as zips; the dir itself is what from_pretrained() loads.
        run "${python}" -m zipfile -c "${packed_dir}.zip" "${packed_dir}"
        mark_done "${packed_dir}"
    fi
fi

# -------------------------------------------------------------------------------------------- 8. decoding
if want 8 "${skip_eval}"; then
    for dset in ${test_sets}; do
        dec="${lm_exp}/${inference_tag}/${dset}"
        log "Stage 8: decoding ${dumpdir}/raw/${dset} with ${packed_dir} -> ${dec}/<system>"
        if done_or_dry "${dec}"; then log "${dec} is complete"; continue; fi
        write_run_sh "${lm_exp}/${inference_tag}" 8
        opts=(--model_dir "${packed_dir}" --data_dir "${dumpdir}/raw/${dset}" --prompt_dir "${dumpdir}/raw/${valid_set}"
              --out_dir "${dec}" --device "${device}")
        [ -n "${decode_config}" ] && opts+=(--config "${decode_config}")
        # Voices first (clones per speaker, TTT), then the utterances in JOB pieces, then per-system merge.
        # shellcheck disable=SC2086
        run ${inference_cmd} "${dec}/log/prepare.log" "${python}" -m espnet_kalle.recipe.decode prepare "${opts[@]}" ${decode_args}
        # shellcheck disable=SC2086
        run ${inference_cmd} JOB=1:"${inference_nj}" "${dec}/log/decode.JOB.log" \
            "${python}" -m espnet_kalle.recipe.decode synth "${opts[@]}" --job JOB --nj "${inference_nj}" ${decode_args}
        run "${python}" -m espnet_kalle.recipe.decode merge "${opts[@]}" --nj "${inference_nj}"
        mark_done "${dec}"
    done
fi

# --------------------------------------------------------------------------------------------- 9. scoring
if want 9 "${skip_eval}"; then
    for dset in ${test_sets}; do
        dec="${lm_exp}/${inference_tag}/${dset}"
        log "Stage 9: scoring ${dec} against ${dumpdir}/raw/${dset} -> ${dec}/scoring/RESULTS.md"
        if done_or_dry "${dec}/scoring"; then log "${dec}/scoring is complete"; continue; fi
        need_file "${dec}/systems" "stage 8 output"
        systems=(SYSTEM)
        [ "${dry_run}" = true ] || mapfile -t systems < "${dec}/systems"
        hyps=()
        for system in "${systems[@]}"; do hyps+=(--hyp-dir "${dec}/${system}" --system "${system}"); done
        # The report also plots the split's latents and the training curves, when this recipe dir has them (a dir
        # that only decodes a packed model may not; kalle-score refuses paths that do not exist).
        extras=()
        latents_scp="${latents_dir}/${dset}/feats.scp"
        if [ -f "${latents_scp}" ] || [ "${dry_run}" = true ]; then extras+=(--latents "${latents_scp}")
        else log "no ${latents_scp}: the report has no latent plots"; fi
        for d in "${codec_exp}" "${lm_exp}"; do
            if [ -d "${d}" ] || [ "${dry_run}" = true ]; then extras+=(--train-log-dir "${d}")
            else log "no ${d}: the report has no training curves of it"; fi
        done
        # One report over every system; the references are scored too, as the ceiling.
        # shellcheck disable=SC2086
        run ${decode_cmd} "${dec}/scoring/log/score.log" \
            kalle-score --ref-dir "${dumpdir}/raw/${dset}" "${hyps[@]}" "${extras[@]}" \
            --title "${dataset} ${dset}: ${lm_tag} + ${codec_tag}" --out "${dec}/scoring" ${score_args}
        mark_done "${dec}/scoring"
        [ "${dry_run}" = true ] || log "results: ${dec}/scoring/RESULTS.md"
    done
fi

# ------------------------------------------------------------------------------------ 10. Hugging Face upload
if want 10 "${skip_upload_hf}"; then
    log "Stage 10: model card + ${packed_dir} -> ${hf_dir} -> https://huggingface.co/${hf_repo}"
    need_file "${packed_dir}/model.yaml" "stage 7 output"
    # The card reports stage 9's scores of every test set and the commands that trained and decoded the model.
    card=(--results_dir "${lm_exp}/${inference_tag}" --test_sets ${test_sets})
    for f in "${codec_exp}/run.sh" "${lm_exp}/run.sh" "${lm_exp}/${inference_tag}/run.sh"; do
        if [ -f "${f}" ] || [ "${dry_run}" = true ]; then card+=(--command_file "${f}"); fi
    done
    [ "${hf_dry_run}" = false ] || card+=(--dry_run)
    # shellcheck disable=SC2086
    run "${python}" -m espnet_kalle.recipe.upload_hf --model_dir "${packed_dir}" --out "${hf_dir}" \
        --repo "${hf_repo}" --dataset "${dataset}" --fs "${fs}" \
        --data_dirs "${dumpdir}/raw/${train_set}" "${dumpdir}/raw/${valid_set}" \
        $(for d in ${test_sets}; do echo "${dumpdir}/raw/${d}"; done) \
        "${card[@]}" ${hf_args}
fi

log "Successfully finished stages ${stage}-${stop_stage}$( [ "${dry_run}" = true ] && echo ' (dry run)')"
