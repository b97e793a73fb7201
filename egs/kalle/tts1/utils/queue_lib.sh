#!/usr/bin/env bash
# Shared part of the cluster launchers utils/slurm.sh (slurm.pl) and utils/queue.sh (queue.pl), sourced by them.
# Our own code with the calling convention and config format of Kaldi's / ESPnet's slurm.pl and queue.pl:
#
#   <launcher> [--config conf/x.conf] [--<option> <value> ...] [JOB=1:N] log.JOB command args...
#
# Every "--<option> <value>" (--gpu 1, --mem 4G, --num_threads 4, --time 1:00:00, --name N, ...) is translated
# into scheduler flags by the config file, as ESPnet's conf/slurm.conf and conf/queue.conf describe:
#
#   command sbatch --export=PATH        # the submit command and its fixed flags
#   option gpu=* --gres=gpu:$0          # flags when --gpu is given ($0: its value)
#   option gpu=0 -p cpu                 # flags for that exact value (wins over option gpu=*; may be empty)
#   default gpu=0                       # the value when the option is not given
#
# An option the config does not describe is an error (it would be dropped silently otherwise). --max_jobs_run is
# the launcher's own (array throttle) unless the config describes it (SGE's "-tc").

set -euo pipefail

# Parsed by parse_launcher_args: the options (name -> value), the JOB range, the log name and the command.
declare -A cli_opts=()
conf=""; var=""; first=1; last=1; log_template=""; cmd=""

parse_launcher_args() {  # parse_launcher_args "$@" (of the launcher)
    local key
    while (( $# > 0 )); do
        case "$1" in
            --*=*) key="${1%%=*}"; key="${key#--}"; cli_opts["${key//-/_}"]="${1#*=}"; shift ;;
            --*)
                (( $# >= 2 )) || { echo "$0: option $1 needs a value" >&2; exit 1; }
                key="${1#--}"; cli_opts["${key//-/_}"]="$2"; shift 2 ;;
            *) break ;;
        esac
    done
    if [ -n "${cli_opts[config]:-}" ]; then conf="${cli_opts[config]}"; unset 'cli_opts[config]'; fi
    if [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+):([0-9]+)$ ]]; then
        var="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${BASH_REMATCH[3]}"; shift
    elif [[ $# -gt 0 && "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=([0-9]+)$ ]]; then
        var="${BASH_REMATCH[1]}"; first="${BASH_REMATCH[2]}"; last="${first}"; shift
    fi
    (( first >= 1 && first <= last )) || { echo "$0: bad job range ${first}:${last} (from 1 up)" >&2; exit 1; }
    (( $# >= 2 )) || { echo "usage: $0 [--config conf] [--option value ...] [JOB=1:N] <log> <command...>" >&2; exit 1; }
    log_template="$1"; shift
    [ -n "${var}" ] || [[ "${log_template}" != *JOB* ]] || {
        echo "$0: the log name contains JOB but no JOB=a:b range was given" >&2; exit 1; }
    # Arguments without whitespace are passed as they are, so an escaped "\|" builds a pipeline, as with run.pl.
    local arg
    for arg in "$@"; do
        if [[ "${arg}" =~ [[:space:]] || -z "${arg}" ]]; then cmd+="$(printf '%q' "${arg}") "; else cmd+="${arg} "; fi
    done
}

# The submit command and flags of the config for the given options -> the array submit_cmd.
read_queue_conf() {  # read_queue_conf <config file>
    local file="$1" line words name value key
    declare -A star=() exact=() defaults=()
    [ -f "${file}" ] || { echo "$0: config file ${file} not found (see conf/ of the recipe)" >&2; exit 1; }
    submit_cmd=()
    while IFS= read -r line || [ -n "${line}" ]; do
        line="${line%%#*}"
        [[ "${line}" =~ ^[[:space:]]*(.*[^[:space:]])[[:space:]]*$ ]] || continue
        line="${BASH_REMATCH[1]}"
        if [[ "${line}" =~ ^command[[:space:]]+(.+)$ ]]; then
            read -ra submit_cmd <<< "${BASH_REMATCH[1]}"
        elif [[ "${line}" =~ ^option[[:space:]]+([^=[:space:]]+)=\*[[:space:]]*(.*)$ ]]; then
            star["${BASH_REMATCH[1]}"]="${BASH_REMATCH[2]}"
        elif [[ "${line}" =~ ^option[[:space:]]+([^=[:space:]]+)=([^[:space:]]+)[[:space:]]*(.*)$ ]]; then
            exact["${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"]="${BASH_REMATCH[3]}"
        elif [[ "${line}" =~ ^default[[:space:]]+([^=[:space:]]+)=([^[:space:]]+)$ ]]; then
            defaults["${BASH_REMATCH[1]}"]="${BASH_REMATCH[2]}"
        else
            echo "$0: cannot parse the line '${line}' of ${file}" >&2; exit 1
        fi
    done < "${file}"
    (( ${#submit_cmd[@]} > 0 )) || { echo "$0: ${file} has no 'command ...' line" >&2; exit 1; }
    for name in "${!defaults[@]}"; do [ -n "${cli_opts[${name}]+set}" ] || cli_opts["${name}"]="${defaults[${name}]}"; done
    for name in "${!cli_opts[@]}"; do
        value="${cli_opts[${name}]}"; key="${name}=${value}"
        if [ -n "${exact[${key}]+set}" ]; then
            read -ra words <<< "${exact[${key}]}"
        elif [ -n "${star[${name}]+set}" ]; then
            read -ra words <<< "${star[${name}]//\$0/${value}}"
        else
            echo "$0: option --${name} ${value} is not described in ${file} (add an 'option ${name}=...' line)" >&2
            exit 1
        fi
        submit_cmd+=("${words[@]}")
    done
}

# The batch script every task runs: cd, path.sh, the command with JOB replaced, Kaldi-style log with exit code.
write_task_script() {  # write_task_script <script> <task id variable of the scheduler>
    local script="$1" task_var="$2"
    cat > "${script}" <<SCRIPT
#!/usr/bin/env bash
cd $(printf '%q' "${PWD}")
[ -f ./path.sh ] && . ./path.sh
n="\${${task_var}:-${first}}"
log=$(printf '%q' "${log_template}")
cmd=$(printf '%q' "${cmd}")
if [ -n $(printf '%q' "${var}") ]; then log="\${log//${var}/\$n}"; cmd="\${cmd//${var}/\$n}"; fi
mkdir -p "\$(dirname "\$log")"
{ echo "# \$cmd"; echo "# Started at \$(date) on \$(hostname) (job \${SLURM_JOB_ID:-\${JOB_ID:-?}})"; } > "\$log"
start=\$(date +%s); rc=0
bash -c "set -o pipefail; \$cmd" >> "\$log" 2>&1 || rc=\$?
{ echo "# Accounting: time=\$(( \$(date +%s) - start ))"; echo "# Ended (code \$rc) at \$(date)"; } >> "\$log"
exit \$rc
SCRIPT
    chmod +x "${script}"
}

# After the scheduler returned: every task's log must end with exit code 0 (the scheduler's own exit status is
# not trusted alone: array jobs and lost nodes report it differently across sites).
check_task_logs() {
    local n logf failed=0 failed_log=""
    for (( n = first; n <= last; n++ )); do
        logf="${log_template}"; [ -z "${var}" ] || logf="${logf//${var}/${n}}"
        if ! tail -n 1 "${logf}" 2>/dev/null | grep -q '^# Ended (code 0)'; then
            failed=$((failed + 1)); failed_log="${logf}"
        fi
    done
    if (( failed > 0 )); then
        echo "$0: ${failed} / $((last - first + 1)) failed, log is in ${failed_log}" >&2
        exit 1
    fi
}

need_submit_command() {  # need_submit_command <hint>
    command -v "${submit_cmd[0]}" >/dev/null || { echo "$0: ${submit_cmd[0]} not found ($1)" >&2; exit 1; }
}

# Submit the task script (blocking), then check every task's log. Flags: ours, the config's, then the user's extra.
submit_and_check() {  # submit_and_check <script> "<extra flags>" <our flags...>
    local script="$1" extra="$2" out="${1%.sh}.submit" rc=0
    shift 2
    # shellcheck disable=SC2086
    "${submit_cmd[0]}" "$@" "${submit_cmd[@]:1}" ${extra} "${script}" > "${out}" 2>&1 || rc=$?
    ( check_task_logs ) || { echo "$0: ${submit_cmd[0]} exited with ${rc}: $(cat "${out}")" >&2; exit 1; }
}
