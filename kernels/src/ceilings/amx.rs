//! AMX tile kernels (`tdpbf16ps` bf16 → f32, `tdpbssd` int8 → int32), the CPU and OS
//! checks they need, and the plain-Rust model of the tile layout that verifies them.
//!
//! # The kernel
//!
//! Eight tiles of 16 rows × 64 bytes: `tmm0..3` accumulate `C(i,j) += A(i)·B(j)` for
//! two A tiles (`tmm4`, `tmm5`) and two B tiles (`tmm6`, `tmm7`), loaded once per
//! call. Every iteration issues four dot-product instructions on four independent
//! accumulators (the latency of one, ~52 cycles on Sapphire Rapids, is covered by
//! four at 16 cycles each). One `tdpbf16ps` is 16·16·32 multiply-adds = 16,384
//! FLOPs; one `tdpbssd` 16·16·64 = 32,768 integer ops (a multiply-add is 2).
//!
//! # Verification
//!
//! The inputs are small integers (−2..=2), exact in bf16 and int8, so every sum is an
//! exact integer in f32 (below 2²⁴ for calls of at most [`CHUNK`] iterations) and in
//! int32. After `n` iterations each accumulator tile must equal `n · A(i)·B(j)`
//! computed by a scalar matmul of the *unpacked* matrices; the B tiles are packed in
//! the VNNI layout the instructions read ([`pack_vnni`]: pairs for bf16, quads for
//! int8). [`tile_dot`] models an instruction on the packed layout; the unit tests
//! check it against the scalar matmul, so verification logic is tested on any CPU.
//!
//! # Permission
//!
//! AMX needs CPUID (AMX-TILE and AMX-BF16 / AMX-INT8), the OS enabling the tile state
//! in XCR0 (bits 17 and 18) and, on Linux ≥ 5.16, a per-process request for the
//! tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); without
//! it the first tile instruction faults. [`availability`] checks all three in that
//! order and says which one refused.

use std::sync::OnceLock;

/// Rows of every tile.
pub const ROWS: usize = 16;
/// Bytes per tile row (the maximum, 64).
pub const ROW_BYTES: usize = 64;
/// Bytes of one tile.
pub const TILE_BYTES: usize = ROWS * ROW_BYTES;
/// Most iterations per kernel call: `|A·B| ≤ 64·2·2 = 256` per iteration keeps
/// `n · |A·B| < 2²⁴`, exact in f32.
pub const CHUNK: u64 = 1 << 15;

/// One of the two AMX dot-product instructions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmxOp {
    /// `tdpbf16ps`: bf16 pairs, f32 accumulation.
    Bf16,
    /// `tdpbssd`: signed int8 quads, int32 accumulation.
    Int8,
}

impl AmxOp {
    /// Depth (elements of the inner dimension) per tile: 32 bf16 or 64 int8.
    pub fn depth(self) -> usize {
        ROW_BYTES / self.element_bytes()
    }

    /// Bytes per element.
    pub fn element_bytes(self) -> usize {
        match self {
            AmxOp::Bf16 => 2,
            AmxOp::Int8 => 1,
        }
    }

    /// Elements of the inner dimension packed together per B-tile column (4 bytes).
    pub fn group(self) -> usize {
        4 / self.element_bytes()
    }

    /// Operations (2 per multiply-add) of one instruction.
    pub fn ops_per_instruction(self) -> u64 {
        (ROWS * ROWS * self.depth() * 2) as u64
    }

    /// Operations of one kernel iteration (four instructions).
    pub fn ops_per_iteration(self) -> u64 {
        4 * self.ops_per_instruction()
    }
}

/// Deterministic small integers in −2..=2 (an LCG; no zeros-only inputs).
pub fn small_values(seed: u64, count: usize) -> Vec<i32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 33) % 5) as i32 - 2
        })
        .collect()
}

/// Pack a row-major `k × n` matrix into the VNNI layout of an AMX B tile: row
/// `r` holds inner indices `r·g .. r·g+g` of every column, column-major within the
/// group: `out[r][j·g + q] = b[r·g + q][j]`.
pub fn pack_vnni(b: &[i32], k: usize, n: usize, group: usize) -> Vec<i32> {
    let mut out = vec![0; k * n];
    for kk in 0..k {
        for j in 0..n {
            out[(kk / group) * (n * group) + j * group + kk % group] = b[kk * n + j];
        }
    }
    out
}

/// What one dot-product instruction computes, modelled on the packed layout it
/// reads: `c[m][j] = Σ_r Σ_q a[m][r·g+q] · bp[r][j·g+q]` for a `16 × depth` A and a
/// packed `depth/g × 16·g` B.
pub fn tile_dot(op: AmxOp, a: &[i32], b_packed: &[i32]) -> Vec<i64> {
    let (k, g) = (op.depth(), op.group());
    let mut c = vec![0i64; ROWS * ROWS];
    for m in 0..ROWS {
        for j in 0..ROWS {
            let mut acc = 0i64;
            for r in 0..k / g {
                for q in 0..g {
                    acc += i64::from(a[m * k + r * g + q])
                        * i64::from(b_packed[r * ROWS * g + j * g + q]);
                }
            }
            c[m * ROWS + j] = acc;
        }
    }
    c
}

/// Plain row-major matmul `(16 × k)·(k × 16)`, the scalar reference.
pub fn matmul(a: &[i32], b: &[i32], k: usize) -> Vec<i64> {
    let mut c = vec![0i64; ROWS * ROWS];
    for m in 0..ROWS {
        for kk in 0..k {
            let x = i64::from(a[m * k + kk]);
            for j in 0..ROWS {
                c[m * ROWS + j] += x * i64::from(b[kk * ROWS + j]);
            }
        }
    }
    c
}

/// bf16 bits of a small integer (exact: the top half of its f32 bits).
pub fn bf16_bits(v: i32) -> u16 {
    ((v as f32).to_bits() >> 16) as u16
}

/// Encode integer elements as tile bytes (bf16 or int8, little-endian).
pub fn encode(op: AmxOp, values: &[i32]) -> Vec<u8> {
    match op {
        AmxOp::Bf16 => values
            .iter()
            .flat_map(|&v| bf16_bits(v).to_le_bytes())
            .collect(),
        AmxOp::Int8 => values.iter().map(|&v| v as i8 as u8).collect(),
    }
}

/// The operands of one kernel: two A tiles and two packed B tiles (bytes, each
/// [`TILE_BYTES`]), and `A(i)·B(j)` for the accumulator tiles in order
/// `(0,0), (0,1), (1,0), (1,1)`.
#[derive(Debug, Clone)]
pub struct Operands {
    /// Which instruction.
    pub op: AmxOp,
    /// A tiles, contiguous (`2 × TILE_BYTES`).
    pub a: Vec<u8>,
    /// Packed B tiles, contiguous (`2 × TILE_BYTES`).
    pub b: Vec<u8>,
    /// Per accumulator tile, the exact result of one iteration (row-major 16 × 16).
    pub unit: [Vec<i64>; 4],
}

impl Operands {
    /// Seeded operands for `op`.
    pub fn new(op: AmxOp, seed: u64) -> Self {
        let k = op.depth();
        let a: Vec<Vec<i32>> = (0..2).map(|i| small_values(seed + i, ROWS * k)).collect();
        let b: Vec<Vec<i32>> = (0..2)
            .map(|j| small_values(seed + 10 + j, k * ROWS))
            .collect();
        let unit = [(0, 0), (0, 1), (1, 0), (1, 1)].map(|(i, j)| matmul(&a[i], &b[j], k));
        Operands {
            op,
            a: a.iter().flat_map(|t| encode(op, t)).collect(),
            b: b.iter()
                .flat_map(|t| encode(op, &pack_vnni(t, k, ROWS, op.group())))
                .collect(),
            unit,
        }
    }

    /// Compare four accumulator tiles (as integers, row-major, in order) after `n`
    /// iterations against `n · A(i)·B(j)`; the first mismatch, if any.
    pub fn check(&self, tiles: &[i64], n: u64) -> Option<String> {
        for (t, unit) in self.unit.iter().enumerate() {
            for (e, &u) in unit.iter().enumerate() {
                let got = tiles.get(t * ROWS * ROWS + e).copied();
                let want = u * n as i64;
                if got != Some(want) {
                    return Some(format!(
                        "tile {t} element ({}, {}): got {got:?}, expected {want} after {n} iterations",
                        e / ROWS,
                        e % ROWS
                    ));
                }
            }
        }
        None
    }
}

/// The tile configuration (`ldtilecfg` operand): palette 1, tiles 0–7 all 16 rows
/// × 64 bytes.
pub fn tile_config() -> [u8; 64] {
    let mut cfg = [0u8; 64];
    cfg[0] = 1;
    for t in 0..8 {
        cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&(ROW_BYTES as u16).to_le_bytes());
        cfg[48 + t] = ROWS as u8;
    }
    cfg
}

/// Why `op` cannot run on this CPU and OS, or `Ok` (permission granted). Asked
/// once per process (CPUID exits to the hypervisor on a VM; the answer cannot
/// change).
pub fn availability(op: AmxOp) -> Result<(), String> {
    static ANSWER: [OnceLock<Result<(), String>>; 2] = [OnceLock::new(), OnceLock::new()];
    ANSWER[op as usize]
        .get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                x86::availability(op)
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                Err("AMX exists only on x86-64".into())
            }
        })
        .clone()
}

/// CPUID feature bits: (AMX-TILE, AMX-BF16, AMX-INT8).
pub fn cpuid_bits() -> (bool, bool, bool) {
    #[cfg(target_arch = "x86_64")]
    {
        x86::cpuid_bits()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (false, false, false)
    }
}

/// Run `n ≤ CHUNK` iterations on fresh (zeroed) accumulators; returns the four
/// accumulator tiles as integers, or `None` when AMX is not available (nothing is
/// executed then).
pub fn run(ops: &Operands, n: u64) -> Option<Vec<i64>> {
    #[cfg(target_arch = "x86_64")]
    {
        if n == 0 || n > CHUNK || availability(ops.op).is_err() {
            return None;
        }
        let mut c = vec![0u8; 4 * TILE_BYTES];
        // SAFETY: AMX is present, enabled in XCR0 and permitted for this process
        // (`availability` above); `a`, `b` and `c` hold 2, 2 and 4 tiles of
        // TILE_BYTES each, the extents the kernel reads and writes.
        unsafe { x86::run_tiles(ops.op, &tile_config(), &ops.a, &ops.b, &mut c, n) };
        Some(
            c.chunks_exact(4)
                .map(|w| {
                    let w = [w[0], w[1], w[2], w[3]];
                    match ops.op {
                        AmxOp::Bf16 => f32::from_le_bytes(w) as i64,
                        AmxOp::Int8 => i64::from(i32::from_le_bytes(w)),
                    }
                })
                .collect(),
        )
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (ops, n);
        None
    }
}

/// The permission request's outcome, asked once per process.
static PERMISSION: OnceLock<Result<(), String>> = OnceLock::new();

/// Ask Linux for the tile-data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, 18)`).
fn request_permission() -> Result<(), String> {
    PERMISSION
        .get_or_init(|| {
            #[cfg(target_os = "linux")]
            {
                const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
                const XFEATURE_XTILEDATA: libc::c_long = 18;
                // SAFETY: arch_prctl with ARCH_REQ_XCOMP_PERM takes a feature number
                // and touches no memory of ours.
                let rc = unsafe {
                    libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
                };
                if rc == 0 {
                    Ok(())
                } else {
                    let e = std::io::Error::last_os_error();
                    Err(format!(
                        "the OS refused AMX tile data: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) failed with errno {} ({e}); Linux ≥ 5.16 without a seccomp filter on arch_prctl is needed",
                        e.raw_os_error().unwrap_or(0)
                    ))
                }
            }
            #[cfg(not(target_os = "linux"))]
            {
                Err("AMX tile-data permission is requested only on Linux (arch_prctl); not supported on this OS".into())
            }
        })
        .clone()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{__cpuid, __cpuid_count, __get_cpuid_max};

    use super::{AmxOp, TILE_BYTES};

    pub(super) fn cpuid_bits() -> (bool, bool, bool) {
        if __get_cpuid_max(0).0 < 7 {
            return (false, false, false);
        }
        let r = __cpuid_count(7, 0);
        let bit = |b: u32| r.edx & (1 << b) != 0;
        (bit(24), bit(22), bit(25))
    }

    /// XCR0, or `None` when the OS has not enabled XSAVE (no `xgetbv` then).
    fn xcr0() -> Option<u64> {
        if __cpuid(1).ecx & (1 << 27) == 0 {
            return None;
        }
        let (lo, hi): (u32, u32);
        // SAFETY: CPUID.1:ECX.OSXSAVE is set (checked above), so xgetbv with ECX = 0
        // is valid; it only writes EDX:EAX.
        unsafe {
            std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
                options(nomem, nostack, preserves_flags));
        }
        Some(u64::from(hi) << 32 | u64::from(lo))
    }

    pub(super) fn availability(op: AmxOp) -> Result<(), String> {
        let (tile, bf16, int8) = cpuid_bits();
        let (have, name, bit) = match op {
            AmxOp::Bf16 => (bf16, "AMX-BF16", 22),
            AmxOp::Int8 => (int8, "AMX-INT8", 25),
        };
        if !(tile && have) {
            return Err(format!(
                "CPU lacks AMX: CPUID.(EAX=7,ECX=0):EDX has AMX-TILE (bit 24) {}, {name} (bit {bit}) {}",
                if tile { "set" } else { "clear" },
                if have { "set" } else { "clear" }
            ));
        }
        match xcr0() {
            None => return Err("the OS has not enabled XSAVE (CPUID.1:ECX.OSXSAVE clear), so no AMX state".into()),
            Some(x) if x & (0b11 << 17) != 0b11 << 17 => {
                return Err(format!(
                    "the OS does not enable the AMX tile state: XCR0 = {x:#x} lacks XTILECFG (bit 17) / XTILEDATA (bit 18)"
                ))
            }
            Some(_) => {}
        }
        super::request_permission()
    }

    /// `n` iterations of four tile dot products on zeroed accumulators, then store
    /// them to `c`.
    ///
    /// # Safety
    /// AMX-TILE and the instruction's feature must be present, enabled and permitted
    /// (see [`availability`]); `a` and `b` must hold two tiles each and `c` four,
    /// and `n ≥ 1`.
    pub(super) unsafe fn run_tiles(
        op: AmxOp,
        cfg: &[u8; 64],
        a: &[u8],
        b: &[u8],
        c: &mut [u8],
        n: u64,
    ) {
        assert!(a.len() >= 2 * TILE_BYTES && b.len() >= 2 * TILE_BYTES);
        assert!(c.len() >= 4 * TILE_BYTES && n >= 1);
        macro_rules! tiles {
            ($dp:literal) => {
                // SAFETY: per the function's contract; every tile access stays within
                // the 2/2/4-tile buffers (stride 64, 16 rows), and the tile state is
                // released before the block ends, so no tile register outlives it.
                unsafe {
                    std::arch::asm!(
                        "ldtilecfg [{cfg}]",
                        "tileloadd tmm4, [{a} + {s}]",
                        "tileloadd tmm5, [{a} + {s} + 1024]",
                        "tileloadd tmm6, [{b} + {s}]",
                        "tileloadd tmm7, [{b} + {s} + 1024]",
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        "2:",
                        concat!($dp, " tmm0, tmm4, tmm6"),
                        concat!($dp, " tmm1, tmm4, tmm7"),
                        concat!($dp, " tmm2, tmm5, tmm6"),
                        concat!($dp, " tmm3, tmm5, tmm7"),
                        "dec {n}",
                        "jnz 2b",
                        "tilestored [{c} + {s}], tmm0",
                        "tilestored [{c} + {s} + 1024], tmm1",
                        "tilestored [{c} + {s} + 2048], tmm2",
                        "tilestored [{c} + {s} + 3072], tmm3",
                        "tilerelease",
                        cfg = in(reg) cfg.as_ptr(),
                        a = in(reg) a.as_ptr(),
                        b = in(reg) b.as_ptr(),
                        c = in(reg) c.as_mut_ptr(),
                        s = in(reg) 64usize,
                        n = inout(reg) n => _,
                        options(nostack),
                    )
                }
            };
        }
        match op {
            AmxOp::Bf16 => tiles!("tdpbf16ps"),
            AmxOp::Int8 => tiles!("tdpbssd"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_the_packed_instruction_model_equals_the_plain_matmul() {
        for op in [AmxOp::Bf16, AmxOp::Int8] {
            let k = op.depth();
            let a = small_values(1, ROWS * k);
            let b = small_values(2, k * ROWS);
            let packed = pack_vnni(&b, k, ROWS, op.group());
            assert_eq!(tile_dot(op, &a, &packed), matmul(&a, &b, k), "{op:?}");
            // Reading the unpacked B as if packed computes something else: the layout
            // matters and the check can tell.
            assert_ne!(tile_dot(op, &a, &b), matmul(&a, &b, k), "{op:?}");
        }
    }

    #[test]
    fn amx_vnni_packing_puts_pairs_and_quads_of_the_inner_dimension_side_by_side() {
        // 4 × 2 matrix, rows k: [[0, 1], [2, 3], [4, 5], [6, 7]].
        let b: Vec<i32> = (0..8).collect();
        assert_eq!(pack_vnni(&b, 4, 2, 2), vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(pack_vnni(&b, 4, 2, 4), vec![0, 2, 4, 6, 1, 3, 5, 7]);
    }

    #[test]
    fn amx_operands_encode_exactly_and_are_not_all_zero() {
        for v in -2..=2 {
            let bits = u32::from(bf16_bits(v)) << 16;
            assert_eq!(f32::from_bits(bits), v as f32);
        }
        let ops = Operands::new(AmxOp::Bf16, 7);
        assert_eq!((ops.a.len(), ops.b.len()), (2 * TILE_BYTES, 2 * TILE_BYTES));
        assert!(ops.unit.iter().all(|u| u.iter().any(|&x| x != 0)));
        // The largest accumulated magnitude stays exact in f32 for a full chunk.
        let max = ops.unit.iter().flatten().map(|x| x.abs()).max().unwrap();
        assert!(max as u64 * CHUNK < 1 << 24, "{max}");
        assert_eq!(
            encode(AmxOp::Int8, &[-2, -1, 0, 1, 2]),
            vec![254, 255, 0, 1, 2]
        );
    }

    #[test]
    fn amx_check_accepts_the_modelled_result_and_catches_a_wrong_one() {
        for op in [AmxOp::Bf16, AmxOp::Int8] {
            let ops = Operands::new(op, 3);
            let n = 1000;
            // What a correct kernel stores: n times the modelled instruction per tile.
            let k = op.depth();
            let a = [small_values(3, ROWS * k), small_values(4, ROWS * k)];
            let b = [small_values(13, k * ROWS), small_values(14, k * ROWS)];
            let mut tiles = Vec::new();
            for (i, j) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let p = pack_vnni(&b[j], k, ROWS, op.group());
                tiles.extend(tile_dot(op, &a[i], &p).iter().map(|x| x * n as i64));
            }
            assert_eq!(ops.check(&tiles, n), None, "{op:?}");
            // One iteration short, one element off, or a tile missing: caught.
            assert!(ops.check(&tiles, n + 1).is_some());
            let mut off = tiles.clone();
            off[3 * 256 + 17] += 1;
            assert!(ops.check(&off, n).unwrap().contains("tile 3"));
            assert!(ops.check(&tiles[..768], n).is_some());
        }
    }

    #[test]
    fn amx_tile_config_is_palette_1_with_eight_full_tiles() {
        let c = tile_config();
        assert_eq!(c[0], 1);
        assert_eq!(&c[16..18], &64u16.to_le_bytes());
        assert_eq!(&c[30..32], &64u16.to_le_bytes());
        assert_eq!(c[48..56], [16u8; 8]);
        assert!(c[56..].iter().all(|&x| x == 0));
    }

    #[test]
    fn amx_counts_flops_per_instruction_as_intel_documents() {
        // tdpbf16ps: 16 × 16 × 32 multiply-adds; tdpbssd: 16 × 16 × 64.
        assert_eq!(AmxOp::Bf16.ops_per_instruction(), 16_384);
        assert_eq!(AmxOp::Int8.ops_per_instruction(), 32_768);
    }

    #[test]
    fn amx_runs_and_verifies_where_the_cpu_and_os_allow_it() {
        for op in [AmxOp::Bf16, AmxOp::Int8] {
            let ops = Operands::new(op, 5);
            match availability(op) {
                Ok(()) => {
                    let tiles = run(&ops, 777).expect("AMX available");
                    assert_eq!(ops.check(&tiles, 777), None, "{op:?}");
                }
                Err(reason) => {
                    eprintln!("{op:?} skipped: {reason}");
                    assert!(run(&ops, 777).is_none());
                    let (tile, ..) = cpuid_bits();
                    if !tile {
                        assert!(reason.contains("CPUID"), "{reason}");
                    }
                }
            }
        }
    }
}
