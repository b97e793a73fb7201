#!/usr/bin/env bash
# Kaldi-style option parsing for recipe scripts, our own minimal version. Source it AFTER defining defaults:
#
#   stage=1; use_gpu=false; help_message="usage: $0 [options] <dir>"
#   . utils/parse_options.sh
#
# Each "--some-name value" / "--some_name value" / "--some_name=value" sets the shell variable some_name, which
# must already exist (an unknown option is an error, not a silent typo). A variable whose default is true/false
# only accepts true/false. "--config FILE" sources FILE (shell assignments) at that point; "--help"/"-h" prints
# $help_message. Parsing stops at the first argument that is not an option or after "--"; the rest is left in "$@".

__po_die() { echo "$0: $*" >&2; exit 1; }

while (( $# > 0 )); do
    case "$1" in
        --help|-h)
            echo "${help_message:-$0: no help message}" >&2
            exit 0 ;;
        --) shift; break ;;
        --config|--config=*)
            if [[ "$1" == *=* ]]; then __po_file="${1#*=}"; shift; else
                (( $# >= 2 )) || __po_die "option --config needs a value"
                __po_file="$2"; shift 2
            fi
            [ -f "${__po_file}" ] || __po_die "config file '${__po_file}' not found"
            # shellcheck disable=SC1090
            . "${__po_file}" ;;
        --?*)
            if [[ "$1" == *=* ]]; then
                __po_key="${1%%=*}"; __po_val="${1#*=}"; shift
            else
                (( $# >= 2 )) || __po_die "option $1 needs a value"
                __po_key="$1"; __po_val="$2"; shift 2
            fi
            __po_name="${__po_key#--}"; __po_name="${__po_name//-/_}"
            [[ "${__po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || __po_die "invalid option name '${__po_key}'"
            # declare -p fails for variables that were never defined (set -u safe).
            declare -p "${__po_name}" >/dev/null 2>&1 || __po_die "unknown option '${__po_key}'"
            __po_old="${!__po_name}"
            if [[ "${__po_old}" == true || "${__po_old}" == false ]] \
                && [[ "${__po_val}" != true && "${__po_val}" != false ]]; then
                __po_die "option ${__po_key} expects true or false, got '${__po_val}'"
            fi
            printf -v "${__po_name}" '%s' "${__po_val}" ;;
        *) break ;;
    esac
done
unset __po_file __po_key __po_val __po_name __po_old
unset -f __po_die
true
