//! The header every result file opens with (schema version, kind, run id, creation
//! time, tool, partial): profile, comm and fleet files write it as the same top-level
//! fields, in the same order, as before it was one shared struct, and read files that
//! lack its optional fields.

#![allow(clippy::unwrap_used)]

use flopcal_bench::comm::CommFile;
use flopcal_bench::fleet::FleetFile;
use flopcal_bench::results::ResultFile;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

const HEADER: [&str; 7] = [
    "schema_version",
    "kind",
    "run_id",
    "created_at",
    "tool",
    "partial",
    "partial_reason",
];

fn tool() -> Value {
    json!({"name": "flopcal", "version": "0.1.0", "git_commit": "0123456789ab"})
}

fn profile_config() -> Value {
    json!({"model": flopcal_model::builtin("bert-base").unwrap(), "seq": 128, "batch": 8,
           "dtypes": ["f32"], "quick": true, "rounds": 1})
}

/// `input` read as `T` and written back as the files are written (pretty JSON): the
/// text, after checking that its top-level fields come in `order`, that it reads
/// back to itself, and that every header field holds what `input` held.
fn written<T: Serialize + DeserializeOwned>(input: &Value, order: &[&str]) -> String {
    let file: T = serde_json::from_value(input.clone()).unwrap();
    let text = serde_json::to_string_pretty(&file).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  \""))
        .filter_map(|l| l.split_once("\":").map(|(k, _)| k))
        .collect();
    assert_eq!(keys, order);
    let again: T = serde_json::from_str(&text).unwrap();
    assert_eq!(serde_json::to_string_pretty(&again).unwrap(), text);
    let out: Value = serde_json::from_str(&text).unwrap();
    for k in HEADER {
        assert_eq!(out.get(k), input.get(k), "{k}");
    }
    text
}

#[test]
fn a_profile_file_keeps_its_header_fields_and_has_no_kind() {
    let input = json!({
        "schema_version": 2, "run_id": "20260101T000000Z-abcdef", "created_at": "2026-01-01T00:00:00Z",
        "tool": tool(), "partial": true,
        "host": {"cpu_model": "c", "arch": "x86_64", "physical_cores": 2, "logical_cpus": 2,
                 "isa_features": [], "memory_bytes": 1, "os": "l", "kernel": "k", "device": "cpu",
                 "device_name": "c", "threads": 2, "candle_version": "0.11.1", "build_features": []},
        "harness": flopcal_bench::harness::HarnessConfig::quick(),
        "profile": profile_config(),
        "benchmarks": []
    });
    written::<ResultFile>(
        &input,
        &[
            "schema_version",
            "run_id",
            "created_at",
            "tool",
            "partial",
            "host",
            "harness",
            "profile",
            "benchmarks",
        ],
    );
}

#[test]
fn a_profile_file_without_partial_reads_as_complete() {
    let mut input = json!({
        "schema_version": 2, "run_id": "r", "created_at": "2026-01-01T00:00:00Z", "tool": tool(),
        "host": {"cpu_model": "c", "arch": "x86_64", "physical_cores": 2, "logical_cpus": 2,
                 "isa_features": [], "memory_bytes": 1, "os": "l", "kernel": "k", "device": "cpu",
                 "device_name": "c", "threads": 2, "candle_version": "0.11.1", "build_features": []},
        "harness": flopcal_bench::harness::HarnessConfig::quick(),
        "profile": profile_config(),
        "benchmarks": []
    });
    let file: ResultFile = serde_json::from_value(input.clone()).unwrap();
    input["partial"] = false.into();
    assert_eq!(serde_json::to_value(&file).unwrap(), input);
}

fn comm(partial_reason: Option<&str>) -> Value {
    let mut v = json!({
        "schema_version": 2, "kind": "comm", "run_id": "20260101T000000Z-abcdef",
        "created_at": "2026-01-01T00:00:00Z", "tool": tool(), "partial": partial_reason.is_some(),
        "ranks": 2, "backend": "mpi", "library": "Open MPI v4.1.6", "hosts": [],
        "config": {"min_bytes": 8, "max_bytes": 8, "collectives": ["all_reduce"], "dtypes": ["f32"],
                   "warmup_iters": 5, "min_iters": 10, "max_iters": 100, "time_per_size_s": 0.005,
                   "timeout_s": 60.0},
        "results": [], "fits": []
    });
    if let Some(r) = partial_reason {
        v["partial_reason"] = r.into();
    }
    v
}

const COMM_ORDER: [&str; 14] = [
    "schema_version",
    "kind",
    "run_id",
    "created_at",
    "tool",
    "partial",
    "partial_reason",
    "ranks",
    "backend",
    "library",
    "hosts",
    "config",
    "results",
    "fits",
];

#[test]
fn a_comm_file_keeps_its_header_fields_in_order() {
    written::<CommFile>(&comm(Some("a rank died")), &COMM_ORDER);
    let complete: Vec<&str> = COMM_ORDER
        .into_iter()
        .filter(|k| *k != "partial_reason")
        .collect();
    written::<CommFile>(&comm(None), &complete);
}

fn fleet(partial_reason: Option<&str>) -> Value {
    let mut v = json!({
        "schema_version": 2, "kind": "fleet", "run_id": "20260101T000000Z-abcdef",
        "created_at": "2026-01-01T00:00:00Z", "tool": tool(), "partial": partial_reason.is_some(),
        "profile": profile_config(), "ranks": [],
        "summary": {"straggler_threshold": 0.05, "kernels": [], "stragglers": []}
    });
    if let Some(r) = partial_reason {
        v["partial_reason"] = r.into();
    }
    v
}

#[test]
fn a_fleet_file_keeps_its_header_fields_in_order_and_older_files_without_a_reason_load() {
    let order = [
        "schema_version",
        "kind",
        "run_id",
        "created_at",
        "tool",
        "partial",
        "partial_reason",
        "profile",
        "ranks",
        "summary",
    ];
    written::<FleetFile>(&fleet(Some("rank 1 never reached the gather")), &order);
    let older: Vec<&str> = order
        .into_iter()
        .filter(|k| *k != "partial_reason")
        .collect();
    written::<FleetFile>(&fleet(None), &older);
}
