//! The library side of `estimate` and `plan`: the catalog as the flags name it, the
//! MFU an estimate rests on (the step model's best layout where the hardware has the
//! figures it needs, the older whole-run fit where it does not), and the table the
//! no-argument run ends with.

use std::path::{Path, PathBuf};

use comfy_table::{Cell, CellAlignment};
use flopcal_model::calibrate::Fit;
use flopcal_model::catalog::{Catalog, CATALOG_ENV};
use flopcal_model::cost::{estimate, Assumptions, Estimate, Plan, Workload};
use flopcal_model::fit;
use flopcal_model::flops::Phase;
use flopcal_model::forecast;
use flopcal_model::network::MeasuredNetwork;
use flopcal_model::published::StepRun;
use flopcal_model::run::{modelled, modelled_with, NetworkFile, SearchOptions};
use flopcal_model::system::System;
use flopcal_model::Hardware;

use crate::efficiency::{self, EfficiencyError, KernelEfficiency};
use crate::render;
use crate::render::table::{human_hours, num, outln, pct, usd};
use crate::Result;
use flopcal_bench::results::ResultFile;

/// The embedded catalog, overridden by `--catalog` or `$FLOPCAL_CATALOG`.
pub fn load_catalog(flag: Option<&Path>) -> Result<Catalog> {
    let env = std::env::var_os(CATALOG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let path = flag.map(Path::to_path_buf).or(env);
    Ok(Catalog::load(path.as_deref())?)
}

/// A team's own runs (`--own-runs FILE`), checked against `cat`; none without the flag.
pub fn load_runs(flag: Option<&Path>, cat: &Catalog) -> Result<Vec<StepRun>> {
    let Some(path) = flag else {
        return Ok(vec![]);
    };
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?;
    Ok(flopcal_model::published::parse_user_runs(
        &text,
        &format!("--own-runs {}", path.display()),
        cat,
        flopcal_model::fit::published_runs(),
    )?)
}

/// The step model's fit with the runs of `--own-runs` beside the published ones, or
/// `None` without any (the embedded fit is then used).
pub fn own_fit(flag: Option<&Path>, cat: &Catalog) -> Result<Option<fit::StepFit>> {
    let yours = load_runs(flag, cat)?;
    if yours.is_empty() {
        return Ok(None);
    }
    Ok(Some(fit::fit_parameters_with(cat, &yours)?))
}

/// Hardware standing for the machine a profile measured: its measured peak.
pub fn local_hardware(k: &KernelEfficiency) -> flopcal_model::Hardware {
    let class = if k.device == "cpu" {
        "local-cpu"
    } else {
        "local-gpu"
    };
    let date = k.profile_created_at.get(..7).unwrap_or("-");
    let mut hw = flopcal_model::Hardware::custom(
        &format!("local ({})", k.device_name),
        class,
        &k.dtype,
        k.peak_flops_per_s / 1e12,
        &k.peak_source,
        date,
    );
    hw.description = format!("this machine as profiled ({})", k.profile_run_id);
    hw
}

/// What a profile measured, as the step model reads it ([`modelled_with`]): its GEMM
/// table ([`efficiency::gemm_table`]) and memory-bound op times
/// ([`efficiency::op_table`]) of the profiled dtype, and for this machine (`local`) the
/// device itself: the measured FMA peak, the host's memory and the best bandwidth the
/// profile measured, one device. `None` for this machine when the profile measured
/// no bandwidth or more than one device is asked for (this machine has no network to
/// model).
pub fn measured_from_profile(
    file: &ResultFile,
    k: &KernelEfficiency,
    local: bool,
    chips: f64,
) -> Option<forecast::Measured> {
    let rates = efficiency::gemm_table(file, Some(&k.dtype));
    if rates.points.is_empty() {
        return None;
    }
    let ops = efficiency::op_table(file, Some(&k.dtype));
    let system = if local {
        let bw = efficiency::measured_bandwidth(file)?;
        if chips != 1.0 {
            return None;
        }
        Some(System {
            name: local_hardware(k).name,
            peak_flops: k.peak_flops_per_s,
            gemm_ceiling_flops: None,
            attention_flops: None,
            memory_bytes: file.host.memory_bytes as f64,
            hbm_bw: bw,
            compute_units: None,
            tiers: vec![flopcal_model::system::Tier {
                name: "none (one device)".into(),
                group_size: 0,
                bw: 1.0,
                latency_s: 0.0,
            }],
        })
    } else {
        None
    };
    Some(forecast::Measured { system, rates, ops })
}

/// The published pre-training plan of a catalog model.
pub fn catalog_plan(cat: &Catalog, model: &str) -> Result<Plan> {
    Ok(Plan::published(cat.model(model)?))
}

/// Kernel efficiency of `model` from `file`, or of the profile's own model as a proxy
/// when the file lacks that model's kernels (the quick profile measures BERT-base only).
fn efficiency_for(
    file: &ResultFile,
    plan: &Plan,
) -> std::result::Result<(KernelEfficiency, bool), String> {
    let Workload::Config {
        config,
        phases,
        options,
        ..
    } = &plan.workload
    else {
        return Err("no architecture".into());
    };
    let req = efficiency::KernelWeights {
        config,
        phases,
        options: *options,
        dtype: None,
        peak_flops: None,
    };
    match efficiency::from_profile(file, &req) {
        Ok(k) => Ok((k, false)),
        Err(EfficiencyError::Missing { .. }) => {
            let own = vec![Phase {
                steps: 1,
                batch: file.profile.batch as u64,
                seq: file.profile.seq as u64,
            }];
            let req = efficiency::KernelWeights {
                config: &file.profile.model,
                phases: &own,
                ..req
            };
            efficiency::from_profile(file, &req)
                .map(|k| (k, true))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `plan` on this machine as `file` profiled it, and whether the step model made it:
/// the step model fed by the profile's measured GEMM rates, op times, FMA peak and
/// bandwidth on one device (as `estimate --profile FILE --hardware local` does), or,
/// where the profile cannot feed it (no bandwidth or GEMM table measured), the
/// measured kernel efficiency times the system efficiency fitted on published runs.
fn this_machine(
    file: &ResultFile,
    k: &KernelEfficiency,
    plan: &Plan,
    hw: &Hardware,
    fit: &Fit,
) -> (std::result::Result<Estimate, String>, bool) {
    if let Some(m) = measured_from_profile(file, k, true, 1.0) {
        let search = SearchOptions {
            keep: 1,
            ..SearchOptions::default()
        };
        match modelled_with(plan, hw, 1.0, None, &search, Some(&m)) {
            Ok(Some(md)) => {
                let e = estimate(plan, hw, &Assumptions::new(1.0, md.source));
                return (e.map_err(|e| e.to_string()), true);
            }
            Ok(None) => {}
            Err(e) => return (Err(e.to_string()), true),
        }
    }
    let e = fit
        .measured_mfu(hw, k.kernel_efficiency)
        .and_then(|m| estimate(plan, hw, &Assumptions::new(1.0, m)))
        .map_err(|e| e.to_string());
    (e, false)
}

/// The end of the no-argument run: BERT-base and BERT-large pre-training on this
/// machine (MFU from the profile just measured) next to TPU v3, A100 and H100
/// (catalog, calibrated MFU), one priced device each, with hours and dollars.
pub fn default_run_table(file: &ResultFile) -> String {
    let mut out = String::new();
    let cat = match load_catalog(None) {
        Ok(c) => c,
        Err(e) => {
            outln!(out, "no estimate table: {e}");
            return out;
        }
    };
    let fit = match Fit::from_catalog(&cat) {
        Ok(f) => f,
        Err(e) => {
            outln!(out, "no estimate table: {e}");
            return out;
        }
    };
    let mut t = render::table::new(vec![
        "pre-training",
        "hardware",
        "chips",
        "MFU",
        "wall-clock",
        "chip-hours",
        "on demand",
        "preemptible",
    ]);
    let r = |s: String| Cell::new(s).set_alignment(CellAlignment::Right);
    let mut notes: Vec<String> = vec![];
    for model in ["bert-base", "bert-large"] {
        let plan = match catalog_plan(&cat, model) {
            Ok(p) => p,
            Err(e) => {
                notes.push(format!("{model}: {e}"));
                continue;
            }
        };
        let mut rows: Vec<(String, std::result::Result<Estimate, String>)> = vec![];
        match efficiency_for(file, &plan) {
            Ok((k, proxy)) => {
                let hw = local_hardware(&k);
                let (e, stepped) = this_machine(file, &k, &plan, &hw, &fit);
                let label = if proxy {
                    format!("this machine* ({})", k.dtype)
                } else {
                    format!("this machine ({})", k.dtype)
                };
                if stepped {
                    notes.push(format!(
                        "{model} on this machine: the step model on the profile's measured GEMM rates and memory-bound op times{}, its {} GFLOP/s {} FMA peak and measured bandwidth, one device, materialised attention",
                        if proxy {
                            format!(" (* measured on {}'s kernels, interpolated across shapes; `flopcal profile --model {model} --out results/{model}.json` measures its own)", k.profile_model)
                        } else {
                            String::new()
                        },
                        flopcal_bench::report_table::fmt_giga(k.peak_flops_per_s),
                        k.dtype
                    ));
                } else if proxy {
                    notes.push(format!(
                        "* {model} on this machine uses the kernel efficiency of the {} kernels just measured ({:.1}%); profile its own with `flopcal profile --model {model} --out results/{model}.json` and `flopcal estimate --model {model} --profile results/{model}.json`",
                        k.profile_model,
                        k.kernel_efficiency * 100.0
                    ));
                } else {
                    notes.push(format!(
                        "{model} on this machine: kernel efficiency {:.1}% of the measured {} GFLOP/s {} peak; dominant: {}",
                        k.kernel_efficiency * 100.0,
                        flopcal_bench::report_table::fmt_giga(k.peak_flops_per_s),
                        k.dtype,
                        k.dominant(2)
                    ));
                }
                rows.push((label, e));
            }
            Err(why) => notes.push(format!("{model} on this machine: no estimate ({why})")),
        }
        for name in ["tpu-v3", "a100", "h100"] {
            let e = cat
                .hardware(name)
                .map_err(|e| e.to_string())
                .and_then(|hw| {
                    let chips = f64::from(hw.chips_per_device);
                    let mfu = match modelled(
                        &plan,
                        hw,
                        chips,
                        None,
                        &SearchOptions {
                            keep: 1,
                            production_layout: true,
                            ..SearchOptions::default()
                        },
                    ) {
                        Ok(Some(m)) => Ok(m.source),
                        Ok(None) => fit.calibrated_mfu(hw),
                        Err(e) => Err(e),
                    };
                    mfu.map_err(|e| e.to_string()).and_then(|m| {
                        estimate(&plan, hw, &Assumptions::new(chips, m)).map_err(|e| e.to_string())
                    })
                });
            rows.push((name.to_string(), e));
        }
        for (label, e) in rows {
            match e {
                Ok(e) => {
                    let hw = if label.starts_with("this machine") {
                        label
                    } else {
                        format!("{} ({})", e.hardware, e.dtype)
                    };
                    // Every figure with its band from the calibrated MFU spread.
                    let band = |mid: String, lo: String, hi: String| {
                        if lo == hi {
                            mid
                        } else {
                            format!("{mid} ({lo}–{hi})")
                        }
                    };
                    t.add_row(vec![
                        Cell::new(&e.model),
                        Cell::new(hw),
                        r(format!("{}", e.devices)),
                        r(band(pct(e.mfu), pct(e.mfu_low), pct(e.mfu_high))),
                        r(band(
                            human_hours(e.wall_hours),
                            human_hours(e.wall_hours_low),
                            human_hours(e.wall_hours_high),
                        )),
                        r(num(Some(e.device_hours))),
                        r(band(
                            usd(e.cost_usd),
                            usd(e.cost_usd_low),
                            usd(e.cost_usd_high),
                        )),
                        r(usd(e.cost_usd_preemptible)),
                    ]);
                }
                Err(why) => notes.push(format!("{model} on {label}: {why}")),
            }
        }
    }
    outln!(
        out,
        "\nEstimated pre-training (BERT's published schedule: 1M steps x 256 sequences, 90% at seq 128, 10% at 512); bands in brackets span the calibrated MFU:"
    );
    outln!(out, "{t}");
    for n in notes {
        outln!(out, "{n}");
    }
    outln!(
        out,
        "MFU: this machine = the step model on what the profile just measured (GEMM rates, memory-bound op times, FMA peak, bandwidth; one device), or where the profile cannot feed it, measured kernel efficiency x system efficiency fitted from published runs; a100 and h100 = the step model's best single-device layout at the GEMM efficiency fitted on published runs of their class; tpu-v3 (no link tiers in the catalog) = the whole-run fit of 2018-19 runs. This machine has no price: `flopcal compare` prices on-prem hardware against the cloud."
    );
    out
}

/// Read `--network FILE`: a missing, unreadable or malformed file, or a fit with a zero
/// or negative bandwidth, is one line naming the file and the field (exit 2).
pub fn load_network(path: &Path) -> Result<NetworkFile> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let net = MeasuredNetwork::from_json_str(&text).map_err(|e| crate::Error::BadFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(NetworkFile {
        path: path.to_path_buf(),
        net,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flopcal_model::cost::MfuSource;

    /// The committed quick profile of the 2-core EPYC.
    fn quick_profile() -> ResultFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/amd-epyc-2core-quick.json");
        flopcal_bench::results::load(&path).unwrap()
    }

    #[test]
    fn the_default_run_estimates_this_machine_with_the_step_model_on_the_profile() {
        let file = quick_profile();
        let table = default_run_table(&file);
        assert!(
            table.contains(
                "bert-base on this machine: the step model on the profile's measured GEMM rates"
            ),
            "{table}"
        );
        assert!(
            !table.contains("on this machine: kernel efficiency"),
            "{table}"
        );
        assert!(
            !table.contains("uses the kernel efficiency of the"),
            "{table}"
        );
        // The row is the step model's prediction, the one `validate` checks.
        let cat = load_catalog(None).unwrap();
        let plan = catalog_plan(&cat, "bert-base").unwrap();
        let (k, _) = efficiency_for(&file, &plan).unwrap();
        let hw = local_hardware(&k);
        let m = measured_from_profile(&file, &k, true, 1.0).unwrap();
        let search = SearchOptions {
            keep: 1,
            ..SearchOptions::default()
        };
        let md = modelled_with(&plan, &hw, 1.0, None, &search, Some(&m))
            .unwrap()
            .unwrap();
        let fit = Fit::from_catalog(&cat).unwrap();
        let (e, stepped) = this_machine(&file, &k, &plan, &hw, &fit);
        assert!(stepped);
        let e = e.unwrap();
        let MfuSource::Modelled { mfu, .. } = md.source else {
            panic!("not modelled");
        };
        let got = e.mfu.unwrap();
        assert!((got - mfu).abs() < 1e-12, "{got} vs {mfu}");
    }

    #[test]
    fn a_profile_without_bandwidth_falls_back_to_the_kernel_efficiency_and_says_so() {
        // Only GEMMs: no kernel that moved bytes, so no bandwidth for the step model.
        let mut file = quick_profile();
        file.benchmarks.retain(|b| b.kernel == "matmul");
        let table = default_run_table(&file);
        assert!(
            table.contains("bert-base on this machine: kernel efficiency"),
            "{table}"
        );
    }
}
