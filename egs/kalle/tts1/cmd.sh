# Job launchers, with Kaldi's run.pl calling convention: "$cmd [opts] [JOB=1:N] <log> <command...>".
#   local (default): utils/run.sh runs jobs on this machine.
#   slurm:           utils/slurm.sh submits with sbatch --wait. Training goes through espnet2.bin.launch, which
#                    uses srun for multi-node jobs only when the launcher is named slurm.pl (hence the symlink).
# Choose with: export cmd_backend=slurm (or edit the default below); site options go in the slurm lines.
cmd_backend="${cmd_backend:-local}"

case "${cmd_backend}" in
    local)
        export train_cmd="utils/run.sh"
        export cuda_cmd="utils/run.sh"
        export decode_cmd="utils/run.sh"
        ;;
    slurm)
        export train_cmd="utils/slurm.sh --mem 16G --num_threads 4"
        export cuda_cmd="utils/slurm.pl --mem 64G --time 7-00:00:00"
        export decode_cmd="utils/slurm.sh --mem 16G --num_threads 2"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        return 1
        ;;
esac
