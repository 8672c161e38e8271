//! `--hf-config`: a Hugging Face config.json as the model of `estimate`.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::Write;

mod common;
use common::{f, flopcal};

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/hf/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn estimate(extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "--hardware",
        "a100-80gb",
        "--devices",
        "64",
        "--tokens",
        "1e10",
    ];
    args.extend_from_slice(extra);
    common::json_of("estimate", &args)
}

#[test]
fn every_family_s_config_gives_its_published_parameter_count() {
    for (name, published) in [
        ("llama-2-70b", 68.98e9),
        ("mixtral-8x7b-v0.1", 46.7e9),
        ("gemma-7b", 8.54e9),
        ("falcon-7b", 6.92e9),
        ("pythia-70m", 70.43e6),
        ("t5-11b", 11.31e9),
    ] {
        let path = fixture(name);
        let v = estimate(&["--hf-config", &path]);
        let got = f(&v, "params_total");
        assert!(
            ((got - published) / published).abs() < 0.01,
            "{name}: {got:.4e}"
        );
    }
}

#[test]
fn flags_override_the_config() {
    let path = fixture("llama-2-7b");
    let base = f(&estimate(&["--hf-config", &path]), "params_total");
    let gqa = f(
        &estimate(&["--hf-config", &path, "--kv-heads", "8"]),
        "params_total",
    );
    // K and V shrink from 32 to 8 heads: 2 × 4096 × (4096 − 1024) fewer per layer.
    let want = base - 32.0 * 2.0 * 4096.0 * 3072.0;
    assert!((gqa - want).abs() < 1.0, "{gqa} vs {want}");
}

fn fails(args: &[&str], needle: &str) {
    let out = flopcal()
        .args(["estimate", "--hardware", "a100-80gb", "--tokens", "1e10"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err}");
}

fn temp_config(text: &str) -> tempfile::NamedTempFile {
    let mut t = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
    t.write_all(text.as_bytes()).unwrap();
    t
}

#[test]
fn bad_configs_are_one_line_and_exit_2() {
    let malformed = temp_config("{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 4096,,\n}\n");
    let p = malformed.path().to_str().unwrap().to_string();
    fails(&["--hf-config", &p], &format!("{p}:3:"));
    let unknown = temp_config(r#"{"model_type": "lama"}"#);
    fails(
        &["--hf-config", unknown.path().to_str().unwrap()],
        "unknown model_type `lama` (did you mean `llama`?)",
    );
    let missing = temp_config(r#"{"model_type": "llama", "hidden_size": 64}"#);
    fails(
        &["--hf-config", missing.path().to_str().unwrap()],
        "needs `num_attention_heads`",
    );
    let llama = fixture("llama-2-7b");
    fails(
        &["--hf-config", &llama, "--kv-heads", "5"],
        "kv_heads 5 must divide heads 32",
    );
    fails(
        &[
            "--hf-config",
            &fixture("mixtral-8x7b-v0.1"),
            "--experts",
            "8",
            "--top-k",
            "9",
        ],
        "top_k 9 exceeds",
    );
    fails(
        &["--hf-config", &llama, "--layers", "0"],
        "--layers must be a positive number",
    );
}

#[test]
fn a_mixture_of_experts_reports_its_active_parameters_beside_the_total() {
    // Mistral AI, "Mixtral of Experts" (Jiang et al. 2024), §2: 47B total, 13B active.
    let moe = estimate(&["--hf-config", &fixture("mixtral-8x7b-v0.1")]);
    let total = f(&moe, "params_total");
    let active = f(&moe, "params_active");
    assert!((total / 46.7e9 - 1.0).abs() < 0.01, "total {total}");
    assert!((active / 12.9e9 - 1.0).abs() < 0.01, "active {active}");
    let dense = estimate(&["--hf-config", &fixture("llama-2-70b")]);
    assert_eq!(f(&dense, "params_active"), f(&dense, "params_total"));
}

#[test]
fn the_training_length_says_where_it_came_from_and_is_not_the_context_limit() {
    let notes = |path: &str, extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--hf-config", path];
        args.extend_from_slice(extra);
        estimate(&args)["assumptions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a.as_str())
            .filter(|a| a.starts_with("seq "))
            .map(str::to_string)
            .collect()
    };
    // Qwen2.5 7B's shape with 30 layers: 131,072 positions, no catalog model: capped.
    let text = std::fs::read_to_string(fixture("qwen2.5-7b"))
        .unwrap()
        .replace("\"num_hidden_layers\": 28", "\"num_hidden_layers\": 30");
    let custom = temp_config(&text);
    let custom = custom.path().to_str().unwrap();
    let q = notes(custom, &[]);
    assert_eq!(q.len(), 1, "{q:?}");
    assert!(
        q[0].starts_with("seq 8192: the config's maximum position (131072) is a context limit"),
        "{q:?}"
    );
    // Qwen2.5 7B itself is the catalog's qwen2.5-7b: its 4,096-token pre-training length.
    let m = notes(&fixture("qwen2.5-7b"), &[]);
    assert!(
        m[0].starts_with("seq 4096: the training length of the catalog's qwen2.5-7b"),
        "{m:?}"
    );
    // --seq says it outright: no note.
    assert!(notes(custom, &["--seq", "4096"]).is_empty());
}

#[test]
fn a_config_of_an_unnamed_family_is_estimated_as_llama_style_and_the_output_says_so() {
    let cfg = temp_config(
        r#"{"model_type": "stablelm", "hidden_size": 2048, "intermediate_size": 5632,
        "num_hidden_layers": 24, "num_attention_heads": 32, "vocab_size": 100352,
        "max_position_embeddings": 4096}"#,
    );
    let path = cfg.path().to_str().unwrap().to_string();
    let v = estimate(&["--hf-config", &path]);
    let notes: Vec<&str> = v["assumptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("model_type `stablelm` is not one flopcal knows by name")),
        "{notes:?}"
    );
    // 24 layers of 4·2048² attention and 3·2048·5632 SwiGLU, two RMSNorm weights each,
    // untied 100,352-word embeddings, and a final norm.
    let want = 24.0 * (4.0 * 2048.0 * 2048.0 + 3.0 * 2048.0 * 5632.0 + 2.0 * 2048.0)
        + 2.0 * 100_352.0 * 2048.0
        + 2048.0;
    assert_eq!(f(&v, "params_total"), want);
}

#[test]
fn multi_head_latent_attention_is_one_line_and_exit_2() {
    let cfg = temp_config(
        r#"{"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
        "num_hidden_layers": 61, "num_attention_heads": 128, "vocab_size": 129280,
        "kv_lora_rank": 512, "q_lora_rank": 1536}"#,
    );
    fails(
        &["--hf-config", cfg.path().to_str().unwrap()],
        "multi-head latent attention",
    );
}
