# Job launchers, as in ESPnet's egs2/TEMPLATE/*/cmd.sh: every stage calls "$cmd [options] [JOB=1:N] <log> <command>"
# with options --gpu, --mem, --num_threads, --max_jobs_run, --time, --name; each backend turns them into its own.
#   local: run.pl runs the jobs on this machine (options ignored)
#   slurm: slurm.pl submits with sbatch, flags from conf/slurm.conf (edit its partitions)
#   sge:   queue.pl submits with qsub (Grid Engine), flags from conf/queue.conf (edit its queue names)
# Switch by changing the one line below, or per run: cmd_backend=slurm ./run.sh ...
# train_cmd: data prep, collect_stats, packing; cuda_cmd: training (espnet2.bin.launch appends --gpu <ngpu>) and,
# with --gpu_inference true, latents and decoding (--gpu 1); decode_cmd: CPU latents, decoding and scoring.
# Multi-node training (--num_nodes > 1) needs slurm (srun) or sge (mpirun through espnet2.bin.launch).
cmd_backend="${cmd_backend:-local}"

case "${cmd_backend}" in
    local)
        export train_cmd="run.pl"
        export cuda_cmd="run.pl"
        export decode_cmd="run.pl"
        ;;
    slurm)
        export train_cmd="slurm.pl"
        export cuda_cmd="slurm.pl"
        export decode_cmd="slurm.pl"
        ;;
    sge)
        export train_cmd="queue.pl"
        export cuda_cmd="queue.pl"
        export decode_cmd="queue.pl"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local, slurm or sge)" >&2
        return 1
        ;;
esac
