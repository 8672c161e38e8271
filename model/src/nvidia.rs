//! NVIDIA's published Megatron pre-training throughput (`catalog/nvidia/`: the NeMo and
//! Megatron-Bridge performance summaries, NeMo AutoModel, the DGX Cloud recipe), read
//! as step runs for the calibration. Each row keeps its source URL and release; a
//! source for leave-one-source-out is one (framework, release, system).
//!
//! Only rows the step model can describe are used; the rest are counted by reason
//! ([`excluded`]): systems without a catalog row (GB200, GB300, B300), precisions
//! without a catalog peak (NVFP4), mixture of experts (not fitted:
//! `benches/moe_via_estimate.py` predicts them through `estimate`, out of sample), and
//! architectures the block model does not have (multi-head latent attention, hybrid
//! Mamba layers, sliding windows).

use std::sync::OnceLock;

use crate::flops::Recompute;
use crate::prices::csv_fields as fields;
use crate::published::{LayoutSpec, Published, StepRun};

const PERF_CSV: &str = include_str!("catalog/nvidia/megatron-perf.csv");
const SHAPES_CSV: &str = include_str!("catalog/nvidia/megatron-shapes.csv");

/// Rows as header-keyed maps.
fn table(text: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(head) = lines.next() else {
        return vec![];
    };
    let head = fields(head);
    lines
        .map(|l| head.iter().cloned().zip(fields(l)).collect())
        .collect()
}

fn get<'a>(row: &'a [(String, String)], key: &str) -> &'a str {
    row.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

fn num(row: &[(String, String)], key: &str) -> Option<u64> {
    get(row, key).parse::<u64>().ok()
}

/// The names a shapes row answers to: each `;`-separated name, with and without a
/// trailing parenthesised annotation.
fn names(entry: &str) -> Vec<String> {
    entry
        .split(';')
        .flat_map(|n| {
            let n = n.trim().to_string();
            let base = n.split(" (").next().unwrap_or(&n).trim().to_string();
            [n, base]
        })
        .collect()
}

/// The block-model architecture of a shapes row, or why it has none.
fn arch(s: &[(String, String)], seq: u64) -> Result<toml::Table, &'static str> {
    let attention = get(s, "attention_kind");
    if !(attention == "MHA" || attention == "GQA" || attention.starts_with("GQA (q-proj")) {
        return Err("attention the block model lacks (MLA, hybrid Mamba, sliding window)");
    }
    if num(s, "experts").is_some_and(|e| e > 0) {
        return Err("mixture of experts (not fitted: benches/moe_via_estimate.py predicts them out of sample)");
    }
    let ffn_kind = match get(s, "ffn_kind") {
        "swiglu" => "swiglu",
        "gelu mlp" | "squared-relu mlp" => "mlp",
        _ => return Err("an FFN kind the block model lacks"),
    };
    let mut t = toml::Table::new();
    for k in [
        "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab",
    ] {
        let v = num(s, k).ok_or("a shape field missing")?;
        t.insert(k.into(), toml::Value::Integer(v as i64));
    }
    t.insert("ffn_kind".into(), toml::Value::String(ffn_kind.into()));
    t.insert("seq".into(), toml::Value::Integer(seq as i64));
    t.insert("causal".into(), toml::Value::Boolean(true));
    t.insert("tied".into(), toml::Value::Boolean(false));
    t.insert("biases".into(), toml::Value::Boolean(false));
    Ok(t)
}

/// The rows used, and the rows left out with their reason.
struct Loaded {
    runs: Vec<StepRun>,
    excluded: Vec<(String, &'static str)>,
}

fn load() -> &'static Loaded {
    static L: OnceLock<Loaded> = OnceLock::new();
    L.get_or_init(|| {
        let shapes = table(SHAPES_CSV);
        let mut runs = vec![];
        let mut excluded = vec![];
        for (i, r) in table(PERF_CSV).iter().enumerate() {
            let system = get(r, "system");
            let model = get(r, "model");
            let label = format!(
                "{} {} {} {}",
                get(r, "release"),
                system,
                get(r, "precision"),
                model
            );
            let mut skip = |why| excluded.push((label.clone(), why));
            let hardware = if system.starts_with("DGX-H100") {
                "h100-sxm"
            } else if system.starts_with("DGX-B200") {
                "b200"
            } else {
                skip("a system without a catalog row (GB200, GB300, B300)");
                continue;
            };
            let precision = get(r, "precision").to_ascii_lowercase();
            let dtype = if precision.starts_with("bf16") {
                "bf16"
            } else if precision.starts_with("fp8") || precision.starts_with("mxfp8") {
                "fp8"
            } else {
                skip("a precision without a catalog peak (NVFP4, unstated)");
                continue;
            };
            let Some(shape) = shapes
                .iter()
                .find(|s| names(get(s, "names_in_tables")).iter().any(|n| n == model))
            else {
                skip("no architecture in the shapes table");
                continue;
            };
            let (Some(gpus), Some(gbs), Some(seq)) = (num(r, "gpus"), num(r, "gbs"), num(r, "seq"))
            else {
                skip("no GPU count, batch or sequence");
                continue;
            };
            let arch = match arch(shape, seq) {
                Ok(a) => a,
                Err(why) => {
                    skip(why);
                    continue;
                }
            };
            let positive = |k: &str| get(r, k).parse::<f64>().ok().filter(|t| *t > 0.0);
            // Tokens/s per GPU where the table prints it, else its step time (the DGX
            // Cloud benchmarking tables print seconds per iteration).
            let (published, measured) =
                match (positive("tokens_per_s_per_gpu"), positive("step_time_s")) {
                    (Some(tps), _) => (
                        Published {
                            tokens_per_s: Some(tps * gpus as f64),
                            ..Published::default()
                        },
                        format!("{tps} tokens/s per GPU"),
                    ),
                    (None, Some(step)) => (
                        Published {
                            step_time_s: Some(step),
                            ..Published::default()
                        },
                        format!("{step} s per step"),
                    ),
                    (None, None) => {
                        skip("neither tokens/s per GPU nor a step time");
                        continue;
                    }
                };
            let small = |k: &str| num(r, k).and_then(|v| u32::try_from(v).ok());
            let framework = match get(r, "framework") {
                "nemo-automodel" => "fsdp",
                _ => "megatron",
            };
            // A layout field the table leaves out but the configuration behind the row
            // states: NeMo AutoModel's Llama 3.1 70B benchmark configurations on 8 nodes
            // (examples/llm_pretrain/llama3_1_70b_pretrain_benchmark_8nodes_tp1cp2pp1*.yaml:
            // `activation_checkpointing: True`, which checkpoints every decoder layer).
            let recompute = (get(r, "framework") == "nemo-automodel" && model == "Llama3 70B")
                .then_some(Recompute::Full);
            let layout = LayoutSpec {
                tp: small("tp"),
                cp: small("cp"),
                pp: small("pp"),
                ep: small("ep"),
                microbatch: small("mbs"),
                virtual_stages: small("vp").or(small("pp").map(|_| 1)),
                zero: get(r, "fsdp")
                    .parse::<u32>()
                    .ok()
                    .filter(|f| *f > 1)
                    .map(|_| 3),
                recompute,
                ..LayoutSpec::default()
            };
            let release = get(r, "release");
            let slug: String = format!("nv-{release}-{system}-{precision}-{model}-{gpus}-{i}")
                .to_ascii_lowercase()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            runs.push(StepRun {
                production: false,
                id: slug,
                hardware: hardware.into(),
                era: format!("{}-{release}", get(r, "framework")),
                framework: framework.into(),
                group: format!("nvidia {} {release} {system}", get(r, "framework")),
                dtype: Some(dtype.into()),
                devices: gpus,
                batch: gbs,
                model: None,
                arch: Some(arch),
                seq: Some(seq),
                layout,
                published,
                source: format!(
                    "{} ({} {release}): {model}, {gpus} x {system}, {precision}, {measured}",
                    get(r, "source_url"),
                    get(r, "framework")
                ),
                date: String::new(),
                interpretation: get(r, "notes").to_string(),
            });
        }
        Loaded { runs, excluded }
    })
}

/// The NVIDIA rows the step model can describe, as step runs.
pub fn runs() -> &'static [StepRun] {
    &load().runs
}

/// The rows left out, each with its reason.
pub fn excluded() -> &'static [(String, &'static str)] {
    &load().excluded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_keep_their_commas() {
        assert_eq!(fields(r#"a,"b, c",d"#), vec!["a", "b, c", "d"]);
        assert_eq!(fields(r#""say ""hi""",x"#), vec![r#"say "hi""#, "x"]);
    }

    #[test]
    fn every_row_is_used_or_excluded_with_a_reason() {
        let total = table(PERF_CSV).len();
        assert_eq!(total, 350);
        assert_eq!(runs().len() + excluded().len(), total);
        assert!(runs().iter().any(|r| r.hardware == "h100-sxm"));
        assert!(runs().iter().any(|r| r.hardware == "b200"));
        assert!(!excluded()
            .iter()
            .any(|(_, why)| why.starts_with("context parallelism")));
        assert!(runs().iter().any(|r| r.layout.cp.is_some_and(|c| c > 1)));
    }

    #[test]
    fn a_source_is_one_framework_release_and_system() {
        for r in runs() {
            assert!(r.group.starts_with("nvidia "), "{}", r.group);
            assert!(
                r.source.contains("tokens/s per GPU") || r.source.contains(" s per step"),
                "{}",
                r.source
            );
        }
    }

    #[test]
    fn only_the_row_whose_configuration_states_it_recomputes_by_statement() {
        let stated: Vec<&StepRun> = runs()
            .iter()
            .filter(|r| r.layout.recompute.is_some())
            .collect();
        assert_eq!(
            stated.len(),
            1,
            "{:?}",
            stated.iter().map(|r| &r.id).collect::<Vec<_>>()
        );
        assert_eq!(stated[0].framework, "fsdp");
        assert!(stated[0].id.contains("llama3-70b"), "{}", stated[0].id);
        assert_eq!(stated[0].layout.recompute, Some(Recompute::Full));
    }
}
