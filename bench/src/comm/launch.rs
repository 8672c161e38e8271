//! Whether this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`)
//! and how many ranks the launch has, read from the environment the launchers set,
//! before MPI is initialised (so a binary started by hand can say how to launch it
//! instead of silently running one rank).

/// Environment variables that carry the world size, per launcher family.
const SIZE_VARS: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE", // Open MPI's mpirun
    "PMI_SIZE",             // MPICH / Hydra, Intel MPI
    "PMIX_SIZE",            // PMIx launchers
    "SLURM_NTASKS",         // srun
];

/// Ranks of the launch, when a launcher started this process.
pub fn launched_size() -> Option<u32> {
    launched_size_from(|k| std::env::var(k).ok())
}

/// [`launched_size`] over any environment lookup (for tests).
pub fn launched_size_from(get: impl Fn(&str) -> Option<String>) -> Option<u32> {
    SIZE_VARS
        .iter()
        .find_map(|k| get(k).and_then(|v| v.trim().parse::<u32>().ok()))
        .filter(|&n| n > 0)
}

/// How to launch `command` across ranks, for the error line.
pub fn how_to_launch(command: &str) -> String {
    format!(
        "flopcal {command} measures across MPI ranks and was not started by an MPI launcher; run it as `mpirun -np 2 flopcal {command} ...` (as root add --allow-run-as-root; on a cluster `srun -n N flopcal {command} ...`)"
    )
}

/// The line printed when `command` needs the `mpi` feature this binary lacks.
pub fn needs_mpi_feature(command: &str) -> String {
    format!(
        "flopcal {command} needs MPI, and this binary was built without it; rebuild with `cargo build --release --features mpi` (needs libopenmpi-dev and libclang-dev) and run `mpirun -np 2 target/release/flopcal {command}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_launcher_familys_size_variable_is_read() {
        let env = |k: &'static str, v: &'static str| move |q: &str| (q == k).then(|| v.to_string());
        assert_eq!(
            launched_size_from(env("OMPI_COMM_WORLD_SIZE", "4")),
            Some(4)
        );
        assert_eq!(launched_size_from(env("PMI_SIZE", "2")), Some(2));
        assert_eq!(launched_size_from(env("SLURM_NTASKS", "8")), Some(8));
        assert_eq!(launched_size_from(|_| None), None);
        assert_eq!(launched_size_from(env("PMI_SIZE", "x")), None);
    }
}
