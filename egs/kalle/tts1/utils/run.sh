#!/usr/bin/env bash
# Local job launcher with Kaldi's run.pl calling convention (our own code; ESPnet's scripts and
# espnet2.bin.launch call "$cmd [options] [JOB=1:N] <log> <command...>"):
#
#   run.pl [--max_jobs_run N] [--gpu N --mem X --num_threads N --time T ...] [JOB=1:N] log.JOB cmd args...
#
# Runs the command once, or once per JOB in 1..N (every "JOB" in the log name and arguments replaced by the
# number), at most --max_jobs_run at a time (default: all). Output goes to the log, which also gets the command,
# start/end times and the exit code. Arguments without whitespace are passed as they are, so an escaped "\|"
# builds a pipeline, as with run.pl. Exits non-zero if any job failed. Scheduler options are accepted and
# ignored (a local machine has nothing to reserve).
set -euo pipefail

max_jobs_run=0
while (( $# > 0 )); do
    case "$1" in
        --max_jobs_run|--max-jobs-run) max_jobs_run="$2"; shift 2 ;;
        --*=*) shift ;;
        --*) (( $# >= 2 )) || { echo "$0: option $1 needs a value" >&2; exit 1; }; shift 2 ;;
        *) break ;;
    esac
done

first=1; last=1; var=""
if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
    var="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"; shift
    (( first <= last )) || { echo "$0: empty job range $first:$last" >&2; exit 1; }
elif [[ $# -gt 0 && "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*=[0-9]+$ ]]; then
    var="${1%%=*}"; first="${1#*=}"; last="$first"; shift
fi
(( $# >= 2 )) || { echo "usage: $0 [options] [JOB=1:N] <log> <command...>" >&2; exit 1; }
log_template="$1"; shift
[ -n "$var" ] || [[ "$log_template" != *JOB* ]] || {
    echo "$0: the log name contains JOB but no JOB=a:b range was given" >&2; exit 1; }

cmd_template=""
for arg in "$@"; do
    if [[ "$arg" =~ [[:space:]] || -z "$arg" ]]; then cmd_template+="$(printf '%q' "$arg") "
    else cmd_template+="$arg "; fi
done

run_one() {  # $1 = job number
    local n="$1" logf cmd start rc
    logf="$log_template"; cmd="$cmd_template"
    if [ -n "$var" ]; then logf="${logf//$var/$n}"; cmd="${cmd//$var/$n}"; fi
    mkdir -p "$(dirname "$logf")"
    start=$(date +%s)
    { echo "# $cmd"; echo "# Started at $(date)"; } > "$logf"
    rc=0
    bash -c "set -o pipefail; $cmd" >> "$logf" 2>&1 < /dev/null || rc=$?
    { echo "# Accounting: time=$(( $(date +%s) - start )) threads=1"; echo "# Ended (code $rc) at $(date)"; } >> "$logf"
    return "$rc"
}

pids=(); jobs_of=(); failed=0; failed_log=""
reap() {  # wait for the oldest running job
    local rc=0
    wait "${pids[0]}" || rc=$?
    if (( rc != 0 )); then
        failed=$((failed + 1))
        failed_log="$log_template"; [ -z "$var" ] || failed_log="${failed_log//$var/${jobs_of[0]}}"
    fi
    pids=("${pids[@]:1}"); jobs_of=("${jobs_of[@]:1}")
}
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
for (( n = first; n <= last; n++ )); do
    if (( max_jobs_run > 0 && ${#pids[@]} >= max_jobs_run )); then reap; fi
    run_one "$n" &
    pids+=("$!"); jobs_of+=("$n")
done
while (( ${#pids[@]} > 0 )); do reap; done

if (( failed > 0 )); then
    echo "$0: $failed / $((last - first + 1)) failed, log is in $failed_log" >&2
    exit 1
fi
