#!/usr/bin/env bash
# Slurm job launcher with the run.pl calling convention (our own code; same interface as utils/run.sh):
#
#   utils/slurm.sh [--gpu N] [--num_threads N] [--mem 16G] [--time 2-00:00:00] [--partition P] [--account A]
#                  [--num_nodes N] [--max_jobs_run N] [JOB=1:N] log.JOB cmd args...
#
# Writes a batch script next to the log and submits it with "sbatch --wait" (a job array for JOB=a:b), so the
# caller blocks and gets a non-zero status if any task fails, like run.pl. Extra sbatch flags: $KALLE_SBATCH_OPTS.
# Multi-node training: espnet2.bin.launch calls "<cmd> --gpu G --num_threads T --num_nodes N <log> srun ... train"
# when the launcher's file name is slurm.pl (it checks the name), hence the utils/slurm.pl symlink to this file.
# One task per node (--ntasks-per-node=1); ESPnet's trainer then spawns one process per GPU on each node
# (--dist_launcher slurm reads SLURM_PROCID/SLURM_NODEID/SLURM_STEP_NODELIST).
set -euo pipefail

gpu=0; num_threads=1; mem=""; time_limit=""; partition=""; account=""; num_nodes=1; max_jobs_run=0
while (( $# > 0 )); do
    case "$1" in
        --gpu) gpu="$2"; shift 2 ;;
        --num_threads|--num-threads) num_threads="$2"; shift 2 ;;
        --mem) mem="$2"; shift 2 ;;
        --time) time_limit="$2"; shift 2 ;;
        --partition) partition="$2"; shift 2 ;;
        --account) account="$2"; shift 2 ;;
        --num_nodes|--num-nodes) num_nodes="$2"; shift 2 ;;
        --max_jobs_run|--max-jobs-run) max_jobs_run="$2"; shift 2 ;;
        --config) shift 2 ;;  # Kaldi's slurm.pl config files are not used: pass flags instead
        --*) echo "$0: unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done

first=""; last=""; var=""
if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
    var="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"; shift
elif [[ $# -gt 0 && "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*=[0-9]+$ ]]; then
    var="${1%%=*}"; first="${1#*=}"; last="$first"; shift
fi
(( $# >= 2 )) || { echo "usage: $0 [options] [JOB=1:N] <log> <command...>" >&2; exit 1; }
log_template="$1"; shift
command -v sbatch >/dev/null || { echo "$0: sbatch not found (is this a Slurm login node?)" >&2; exit 1; }

cmd=""
for arg in "$@"; do
    if [[ "$arg" =~ [[:space:]] || -z "$arg" ]]; then cmd+="$(printf '%q' "$arg") "; else cmd+="$arg "; fi
done

log_dir="$(dirname "$log_template")"; mkdir -p "$log_dir/q"
base="$(basename "$log_template")"; base="${base//JOB/x}"
script="$log_dir/q/${base%.log}.sh"
# Slurm writes its own output file per array task (%a); the task's real log is $log_template with JOB -> index.
sb=(--job-name "kalle-${base%.log}" --nodes "$num_nodes" --ntasks-per-node 1 --cpus-per-task "$num_threads"
    --output "$log_dir/q/${base%.log}.%A_%a.out" --wait)
(( gpu > 0 )) && sb+=(--gres "gpu:$gpu")
[ -n "$mem" ] && sb+=(--mem "$mem")
[ -n "$time_limit" ] && sb+=(--time "$time_limit")
[ -n "$partition" ] && sb+=(--partition "$partition")
[ -n "$account" ] && sb+=(--account "$account")
if [ -n "$var" ]; then
    arr="$first-$last"; (( max_jobs_run > 0 )) && arr+="%$max_jobs_run"
    sb+=(--array "$arr")
fi

cat > "$script" <<SCRIPT
#!/usr/bin/env bash
set -o pipefail
cd $(printf '%q' "$PWD")
n="\${SLURM_ARRAY_TASK_ID:-1}"
log=$(printf '%q' "$log_template")
cmd=$(printf '%q' "$cmd")
if [ -n $(printf '%q' "$var") ]; then log="\${log//$var/\$n}"; cmd="\${cmd//$var/\$n}"; fi
mkdir -p "\$(dirname "\$log")"
{ echo "# \$cmd"; echo "# Started at \$(date) on \$(hostname) (slurm job \${SLURM_JOB_ID:-?})"; } > "\$log"
start=\$(date +%s); rc=0
bash -c "\$cmd" >> "\$log" 2>&1 || rc=\$?
{ echo "# Accounting: time=\$(( \$(date +%s) - start )) threads=$num_threads"; echo "# Ended (code \$rc) at \$(date)"; } >> "\$log"
exit \$rc
SCRIPT

# shellcheck disable=SC2086
if ! sbatch "${sb[@]}" ${KALLE_SBATCH_OPTS:-} "$script" > "$log_dir/q/${base%.log}.submit" 2>&1; then
    echo "$0: slurm job failed: $(cat "$log_dir/q/${base%.log}.submit"); log is in $log_template" >&2
    exit 1
fi
