#!/usr/bin/env bash
# Grid Engine (SGE/UGE, qsub) job launcher with the calling convention of Kaldi's / ESPnet's queue.pl (our own code;
# utils/queue.pl links here):
#
#   queue.pl [--config conf/queue.conf] [--gpu N] [--mem 4G] [--num_threads N] [--max_jobs_run N] [--name N]
#            [JOB=1:N] log.JOB command args...
#
# conf/queue.conf (ESPnet's format, see utils/queue_lib.sh) turns the options into qsub flags: edit its queue
# names (-q) for your cluster. The launcher writes a batch script into <log dir>/q/, submits it with "qsub -sync y"
# (an array job "-t a:b" for JOB=a:b), so the caller blocks like run.pl, and fails if any task's log does not end
# with exit code 0. More qsub flags for every job: $KALLE_QSUB_OPTS.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/queue_lib.sh"

parse_launcher_args "$@"
read_queue_conf "${conf:-conf/queue.conf}"
need_submit_command "is this a Grid Engine host?"

log_dir="$(dirname "${log_template}")"; mkdir -p "${log_dir}/q"
base="$(basename "${log_template}")"; base="${base//JOB/x}"; base="${base%.log}"
write_task_script "${log_dir}/q/${base}.sh" SGE_TASK_ID
# SGE job names may not contain "/"; the config's -N (from --name) comes later and wins.
flags=(-N "kalle-${base//\//_}" -o "${log_dir}/q/${base}.out" -j y -sync y)
[ -z "${var}" ] || flags+=(-t "${first}:${last}")
submit_and_check "${log_dir}/q/${base}.sh" "${KALLE_QSUB_OPTS:-}" "${flags[@]}"
