//! `benches/gpu-check.sh` on a machine without a GPU: its preconditions, each a clear
//! line and exit 2 with nothing written, and its `--dry-run` plan. The GPU machine is
//! faked: `nvidia-smi` and `python3` are stubs first on PATH, `python3` runs the real
//! interpreter without site-packages over fake `torch` and `nvidia` packages, and
//! target/gpu/flopcal is a shell script.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Tools the script may call besides the faked ones; each is linked into a folder that
/// is the rest of PATH, so a real `nvidia-smi` or `python3` of the test machine can't leak in.
const TOOLS: &[&str] = &[
    "bash", "sh", "dirname", "tr", "sed", "grep", "cut", "head", "tail", "timeout", "id", "date",
    "mkdir", "rm", "mv", "tee", "cat", "sort",
];

const LIBS: &[&str] = &[
    "libcublas.so.13",
    "libcublasLt.so.13",
    "libcurand.so.10",
    "libnvrtc.so.13",
];

fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not on PATH"))
}

/// The real interpreter behind `python3` (not a shim that needs the full PATH).
fn real_python() -> PathBuf {
    let o = Command::new(which("python3"))
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python3 is needed to fake the GPU machine's"
    );
    PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
}

fn write_exe(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake GPU machine with every precondition met; the tests take one away.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let m = Machine {
            dir: tempfile::tempdir().unwrap(),
        };
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches");
        fs::create_dir_all(m.repo().join("benches")).unwrap();
        for f in ["gpu-check.sh", "gpu_env.py", "torch_matmul_peer.py"] {
            fs::copy(src.join(f), m.repo().join("benches").join(f)).unwrap();
        }
        let gpu = m.repo().join("target/gpu");
        fs::create_dir_all(&gpu).unwrap();
        write_exe(&gpu.join("flopcal"), "#!/bin/sh\necho 'flopcal 0.1.0'\n");
        fs::write(gpu.join("flopcal.cap"), "90\n").unwrap();
        fs::write(
            gpu.join("flopcal.build"),
            format!(
                "features: cuda\nneeded: {} libcuda.so.1 libgcc_s.so.1 libm.so.6 libc.so.6\n",
                LIBS.join(" ")
            ),
        )
        .unwrap();
        let lib = m.site().join("nvidia/cu13/lib");
        fs::create_dir_all(&lib).unwrap();
        for l in LIBS {
            fs::write(lib.join(l), "").unwrap();
        }
        fs::create_dir_all(m.site().join("torch")).unwrap();
        fs::write(
            m.site().join("torch/__init__.py"),
            "__version__ = '2.11.0+cu130'\n\
             class version:\n    cuda = '13.0'\n\
             class cuda:\n    is_available = staticmethod(lambda: True)\n    \
             device_count = staticmethod(lambda: 1)\n",
        )
        .unwrap();
        for d in ["bin", "tools", "out"] {
            fs::create_dir_all(m.dir.path().join(d)).unwrap();
        }
        for t in TOOLS {
            std::os::unix::fs::symlink(which(t), m.dir.path().join("tools").join(t)).unwrap();
        }
        write_exe(
            &m.bin().join("python3"),
            &format!(
                "#!/bin/sh\nPYTHONPATH='{}' exec '{}' -S \"$@\"\n",
                m.site().display(),
                real_python().display()
            ),
        );
        m.gpus(&["0, NVIDIA H200, 9.0, 580.159.04"]);
        m
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    fn site(&self) -> PathBuf {
        self.dir.path().join("site")
    }
    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// `nvidia-smi --query-gpu=index,name,compute_cap,driver_version` prints these rows.
    fn gpus(&self, rows: &[&str]) {
        let body: String = rows.iter().map(|r| format!("echo '{r}'\n")).collect();
        write_exe(
            &self.bin().join("nvidia-smi"),
            &format!("#!/bin/sh\n{body}"),
        );
    }

    fn run(&self, args: &[&str]) -> Output {
        let path = std::env::join_paths([self.bin(), self.dir.path().join("tools")]).unwrap();
        Command::new(which("bash"))
            .arg(self.repo().join("benches/gpu-check.sh"))
            .args(args)
            .current_dir(self.repo())
            .env("PATH", path)
            .env("OUT", self.out())
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("FLOPCAL_GPU_CHECK_DRY_RUN")
            .output()
            .unwrap()
    }

    /// Both modes refuse with the one line holding every `needles`, exit 2, and write nothing.
    fn refuses(&self, needles: &[&str]) -> String {
        let mut line = String::new();
        for args in [&["--dry-run"][..], &[][..]] {
            let o = self.run(args);
            let err = String::from_utf8_lossy(&o.stderr).to_string();
            assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("gpu-check: "), "{err}");
            for n in needles {
                assert!(err.contains(n), "{args:?}: `{n}` not in: {err}");
            }
            assert!(
                o.stdout.is_empty(),
                "{}",
                String::from_utf8_lossy(&o.stdout)
            );
            let left: Vec<_> = fs::read_dir(self.out()).unwrap().collect();
            assert!(left.is_empty(), "{args:?} left {left:?}");
            line = err;
        }
        line
    }
}

#[test]
fn dry_run_with_every_precondition_met_prints_the_plan_and_writes_nothing() {
    let m = Machine::new();
    let o = m.run(&["--dry-run"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for want in [
        "preconditions hold",
        "1 x NVIDIA H200 (driver 580.159.04)",
        "built for sm_90",
        "torch 2.11.0+cu130",
        "target/gpu/flopcal peak ",
        "target/gpu/flopcal profile --device cuda --quick --dtype bf16,f16 --squares 4096,8192 --square-dtype bf16,f16",
        "target/gpu/flopcal validate --device cuda",
        "python3 benches/torch_matmul_peer.py --profile",
        "comm --backend nccl: skipped (one GPU visible",
    ] {
        assert!(text.contains(want), "`{want}` not in:\n{text}");
    }
    let lib = m.site().join("nvidia/cu13/lib");
    assert!(
        text.contains(&format!("LD_LIBRARY_PATH: {}", lib.display())),
        "{text}"
    );
    assert_eq!(fs::read_dir(m.out()).unwrap().count(), 0);
    // The same through the environment variable.
    let o = Command::new(which("bash"))
        .arg(m.repo().join("benches/gpu-check.sh"))
        .current_dir(m.repo())
        .env(
            "PATH",
            std::env::join_paths([m.bin(), m.dir.path().join("tools")]).unwrap(),
        )
        .env("OUT", m.out())
        .env("FLOPCAL_GPU_CHECK_DRY_RUN", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("preconditions hold"));
    assert_eq!(fs::read_dir(m.out()).unwrap().count(), 0);
}

#[test]
fn two_gpus_with_a_binary_without_mpi_say_why_comm_is_skipped() {
    let m = Machine::new();
    m.gpus(&[
        "0, NVIDIA H200, 9.0, 580.159.04",
        "1, NVIDIA H200, 9.0, 580.159.04",
    ]);
    let o = m.run(&["--dry-run"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("2 x NVIDIA H200"), "{text}");
    assert!(
        text.contains(
            "comm --backend nccl: skipped (target/gpu/flopcal was built without the mpi feature"
        ),
        "{text}"
    );
}

#[test]
fn no_nvidia_smi_means_no_gpu() {
    let m = Machine::new();
    fs::remove_file(m.bin().join("nvidia-smi")).unwrap();
    m.refuses(&["no GPU", "nvidia-smi is not on PATH"]);
}

#[test]
fn nvidia_smi_that_finds_no_device_means_no_gpu() {
    let m = Machine::new();
    write_exe(
        &m.bin().join("nvidia-smi"),
        "#!/bin/sh\necho 'No devices were found'\nexit 6\n",
    );
    m.refuses(&["no GPU", "No devices were found"]);
}

#[test]
fn a_binary_built_for_another_compute_capability_says_how_to_rebuild() {
    let m = Machine::new();
    m.gpus(&["0, NVIDIA A100-SXM4-80GB, 8.0, 580.159.04"]);
    m.refuses(&[
        "built for sm_90",
        "GPU 0 (NVIDIA A100-SXM4-80GB) is sm_80",
        "CUDA_COMPUTE_CAP=80 bash benches/gpu-build.sh",
    ]);
}

#[test]
fn no_binary_says_where_to_build_it() {
    let m = Machine::new();
    fs::remove_file(m.repo().join("target/gpu/flopcal")).unwrap();
    m.refuses(&["no target/gpu/flopcal", "benches/gpu-build.sh"]);
}

#[test]
fn a_binary_without_its_recorded_compute_capability_is_refused() {
    let m = Machine::new();
    fs::remove_file(m.repo().join("target/gpu/flopcal.cap")).unwrap();
    m.refuses(&["no target/gpu/flopcal.cap", "benches/gpu-build.sh"]);
}

#[test]
fn python_without_torch_is_refused() {
    let m = Machine::new();
    fs::remove_dir_all(m.site().join("torch")).unwrap();
    m.refuses(&["python3 has no torch", "ModuleNotFoundError"]);
}

#[test]
fn missing_cuda_libraries_are_named() {
    let m = Machine::new();
    fs::remove_file(m.site().join("nvidia/cu13/lib/libcurand.so.10")).unwrap();
    let line = m.refuses(&["CUDA libraries missing: libcurand.so.10", "nvidia/*/lib"]);
    assert!(!line.contains("libcublas.so.13"), "{line}");
}

#[test]
fn a_binary_the_loader_cannot_start_is_refused_with_the_loader_s_reason() {
    let m = Machine::new();
    write_exe(
        &m.repo().join("target/gpu/flopcal"),
        "#!/bin/sh\necho 'flopcal: error while loading shared libraries: libcuda.so.1: cannot open shared object file' >&2\nexit 127\n",
    );
    m.refuses(&["does not start here", "libcuda.so.1"]);
}
