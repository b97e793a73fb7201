#!/usr/bin/env bash
# Slurm job launcher with the calling convention of Kaldi's / ESPnet's slurm.pl (our own code; utils/slurm.pl links
# here, the name espnet2.bin.launch looks for to start multi-node training with srun):
#
#   slurm.pl [--config conf/slurm.conf] [--gpu N] [--mem 4G] [--num_threads N] [--time T] [--name N]
#            [--max_jobs_run N] [JOB=1:N] log.JOB command args...
#
# conf/slurm.conf (ESPnet's format, see utils/queue_lib.sh) turns the options into sbatch flags: edit its
# partitions (-p) for your cluster. The launcher writes a batch script into <log dir>/q/, submits it with
# "sbatch --wait" (a job array for JOB=a:b, throttled by --max_jobs_run), so the caller blocks like run.pl, and
# fails if any task's log does not end with exit code 0. More sbatch flags for every job: $KALLE_SBATCH_OPTS.
# espnet2.bin.launch runs multi-node training as one task per node (conf: --ntasks-per-node=1, --nodes from
# --num_nodes); ESPnet's trainer then spawns one process per GPU on each node (--dist_launcher slurm).
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/queue_lib.sh"

parse_launcher_args "$@"
max_jobs_run="${cli_opts[max_jobs_run]:-0}"; unset 'cli_opts[max_jobs_run]'
read_queue_conf "${conf:-conf/slurm.conf}"
need_submit_command "is this a Slurm login node?"

log_dir="$(dirname "${log_template}")"; mkdir -p "${log_dir}/q"
base="$(basename "${log_template}")"; base="${base//JOB/x}"; base="${base%.log}"
write_task_script "${log_dir}/q/${base}.sh" SLURM_ARRAY_TASK_ID
# The scheduler's own output per task (%a); the task's real log is the log name with JOB -> index.
flags=(--job-name "kalle-${base}" --output "${log_dir}/q/${base}.%A_%a.out" --wait)
if [ -n "${var}" ]; then
    arr="${first}-${last}"; (( max_jobs_run > 0 )) && arr+="%${max_jobs_run}"
    flags+=(--array "${arr}")
fi
# The config's flags come after ours, so its --job-name (from --name) wins.
submit_and_check "${log_dir}/q/${base}.sh" "${KALLE_SBATCH_OPTS:-}" "${flags[@]}"
