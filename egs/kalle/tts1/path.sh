# Sourced by run.sh/kalle.sh (and by espnet2.bin.launch --envfile on remote hosts).
# espnet-kalle is a pip install (editable in the repo's .venv): no ESPnet checkout, no tools/ dir, no PYTHONPATH.
__kalle_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "${__kalle_root}/.venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${__kalle_root}/.venv/bin/activate"
fi
unset __kalle_root
export LC_ALL=C                     # byte-order sort, as Kaldi data dirs require
export PYTHONIOENCODING=UTF-8
# One BLAS/OpenMP thread per process: jobs run in parallel (--nj) and OpenMP spin-waits slow shared CPUs.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MKL_NUM_THREADS="${MKL_NUM_THREADS:-${OMP_NUM_THREADS}}"
export PATH="${PWD}/utils:${PATH}"
