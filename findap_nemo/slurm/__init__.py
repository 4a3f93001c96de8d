"""SLURM batch jobs for every stage: sbatch rendering, auto-resume on the pre-timeout signal, afterok pipelines,
job-array sweeps and a job status summary (`findap-nemo slurm`)."""
