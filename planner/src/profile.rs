//! Hardware profiles: YAML files with the original Sintra's fields (`name`, `constraints`,
//! `targets`, `supported_quantizations`) plus ours (RAM, cores, SIMD features, memory
//! bandwidth, an SSH `connection`). Unknown keys and impossible values are errors naming the
//! field. The profiles shipped in `profiles/` are also built into the binary, so `sintra rpi5`
//! works from anywhere.

use crate::targets::Targets;
use formats::quant::GgmlType;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A device to fit a model onto.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub constraints: Constraints,
    #[serde(default)]
    pub targets: Targets,
    /// Sintra's list: ggml type names (`Q4_K`, `Q8_0`) restrict the recipes; `GGUF` allows every
    /// type the runtime runs; other methods of the original (`BNB`, `AWQ`, `ONNX`) are accepted
    /// and ignored (sintra writes GGUF only).
    #[serde(default)]
    pub supported_quantizations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
}

/// What the device has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// GPU memory in GB (Sintra's field; 0 for none; shared memory on a Pi or Jetson).
    #[serde(default)]
    pub vram_gb: f64,
    /// `arm64`/`aarch64`, `x86_64`, `armv7`.
    pub cpu_arch: String,
    #[serde(default)]
    pub has_cuda: bool,
    /// System memory in GB (ours; Sintra's profiles lack it, then `vram_gb` stands in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_gb: Option<f64>,
    /// CPU cores the runtime may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    /// SIMD features (`neon`, `dotprod`, `avx2`, `fma`, `f16c`, `avx512f`).
    #[serde(default)]
    pub simd: Vec<String>,
    /// Sustained memory bandwidth in GB/s: the roofline's ceiling for token generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bandwidth_gbps: Option<f64>,
}

/// How to reach the device over SSH (the transport lands with the device channel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Prepended to every remote command (`qemu-aarch64 -L /usr/aarch64-linux-gnu`, `sudo -u pi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_prefix: Option<String>,
    /// The Rust target triple of the `sintra-rt` to deploy (`aarch64-unknown-linux-musl`).
    pub runtime_target: String,
}

fn default_port() -> u16 {
    22
}

/// A profile that could not be read or makes no sense; every variant names the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: field `{field}`: {problem}")]
    BadValue {
        path: String,
        field: &'static str,
        problem: String,
    },
    #[error("no profile named '{0}' (looked for a file, in $SINTRA_PROFILES, ./profiles and the built-in profiles: {1})")]
    NotFound(String, String),
}

/// The profiles shipped in `profiles/`, built into the binary.
pub const BUILTIN: &[(&str, &str)] = &[
    ("rpi4", include_str!("../../profiles/rpi4.yaml")),
    ("rpi5", include_str!("../../profiles/rpi5.yaml")),
    (
        "jetson-nano",
        include_str!("../../profiles/jetson-nano.yaml"),
    ),
    (
        "jetson-orin-nano",
        include_str!("../../profiles/jetson-orin-nano.yaml"),
    ),
    ("x86-laptop", include_str!("../../profiles/x86-laptop.yaml")),
    (
        "qemu-aarch64",
        include_str!("../../profiles/qemu-aarch64.yaml"),
    ),
];

/// The types a recipe may use: those the runtime's kernels run and `formats` can write.
pub const RECIPE_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q6_K,
    GgmlType::Q5_K,
    GgmlType::Q5_1,
    GgmlType::Q5_0,
    GgmlType::Q4_K,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::IQ4_NL,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
];

/// Quantization methods of the original Sintra that are not GGUF types: accepted, not used.
const OTHER_METHODS: &[&str] = &["BNB", "AWQ", "GPTQ", "ONNX", "EXL2", "MLX"];

impl Profile {
    /// Parse and check a profile; `path` names it in errors.
    pub fn from_yaml(text: &str, path: &str) -> Result<Profile, ProfileError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let p: Profile = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            ProfileError::Syntax {
                path: path.to_string(),
                message: if field == "." {
                    inner.to_string()
                } else {
                    format!("field `{field}`: {inner}")
                },
            }
        })?;
        p.check(path)?;
        Ok(p)
    }

    /// A profile by file path, or by name from `$SINTRA_PROFILES`, `./profiles` or the
    /// built-in set.
    pub fn load(spec: &str) -> Result<Profile, ProfileError> {
        let as_path = Path::new(spec);
        if as_path.is_file() {
            return Self::from_file(as_path);
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        if let Some(d) = std::env::var_os("SINTRA_PROFILES") {
            dirs.push(d.into());
        }
        dirs.push("profiles".into());
        for d in &dirs {
            for ext in ["yaml", "yml"] {
                let p = d.join(format!("{spec}.{ext}"));
                if p.is_file() {
                    return Self::from_file(&p);
                }
            }
        }
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == spec) {
            return Self::from_yaml(text, &format!("<built-in profile {name}>"));
        }
        let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
        Err(ProfileError::NotFound(spec.to_string(), names.join(", ")))
    }

    fn from_file(path: &Path) -> Result<Profile, ProfileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_yaml(&text, &shown)
    }

    fn check(&self, path: &str) -> Result<(), ProfileError> {
        let bad = |field: &'static str, problem: String| ProfileError::BadValue {
            path: path.to_string(),
            field,
            problem,
        };
        let c = &self.constraints;
        let positive = |field: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(field, format!("must be a positive number, found {v}")))
            }
        };
        if self.name.trim().is_empty() {
            return Err(bad("name", "must not be empty".into()));
        }
        if !(c.vram_gb.is_finite() && c.vram_gb >= 0.0) {
            return Err(bad(
                "constraints.vram_gb",
                format!("must be 0 or more, found {}", c.vram_gb),
            ));
        }
        if normalize_arch(&c.cpu_arch).is_none() {
            return Err(bad(
                "constraints.cpu_arch",
                format!(
                    "unknown architecture '{}' (known: arm64, aarch64, x86_64, armv7)",
                    c.cpu_arch
                ),
            ));
        }
        if let Some(r) = c.ram_gb {
            positive("constraints.ram_gb", r)?;
        }
        if c.ram_gb.is_none() && c.vram_gb == 0.0 {
            return Err(bad(
                "constraints.ram_gb",
                "missing (and vram_gb is 0): the planner needs the device's memory".into(),
            ));
        }
        if let Some(n) = c.cores {
            if n == 0 || n > 4096 {
                return Err(bad(
                    "constraints.cores",
                    format!("must be between 1 and 4096, found {n}"),
                ));
            }
        }
        if let Some(b) = c.memory_bandwidth_gbps {
            positive("constraints.memory_bandwidth_gbps", b)?;
        }
        for f in &c.simd {
            if !KNOWN_SIMD.contains(&f.to_ascii_lowercase().as_str()) {
                return Err(bad(
                    "constraints.simd",
                    format!("unknown feature '{f}' (known: {})", KNOWN_SIMD.join(", ")),
                ));
            }
        }
        let t = &self.targets;
        let value = |t: &Option<crate::targets::Target>| t.as_ref().map(|t| t.value);
        if let Some(v) = value(&t.min_tokens_per_second) {
            positive("targets.min_tokens_per_second", v)?;
        }
        if let Some(v) = value(&t.max_memory_mib) {
            positive("targets.max_memory_mib", v)?;
        }
        if let Some(v) = value(&t.min_accuracy_score) {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Err(bad(
                    "targets.min_accuracy_score",
                    format!("must be in (0, 1] (top-1 agreement with the original), found {v}"),
                ));
            }
        }
        if let Some(v) = value(&t.max_latency_ms) {
            positive("targets.max_latency_ms", v)?;
        }
        if let Some(v) = value(&t.min_speedup) {
            positive("targets.min_speedup", v)?;
        }
        for q in &self.supported_quantizations {
            if !q.eq_ignore_ascii_case("gguf")
                && GgmlType::from_name(q).is_none()
                && !OTHER_METHODS.iter().any(|m| m.eq_ignore_ascii_case(q))
            {
                return Err(bad(
                    "supported_quantizations",
                    format!("unknown quantization '{q}' (ggml types like Q4_K, or GGUF)"),
                ));
            }
            if let Some(ty) = GgmlType::from_name(q) {
                if !RECIPE_TYPES.contains(&ty) {
                    return Err(bad(
                        "supported_quantizations",
                        format!("type {ty} cannot be written or run by sintra"),
                    ));
                }
            }
        }
        if !self.supported_quantizations.is_empty() && self.allowed_types().is_empty() {
            return Err(bad(
                "supported_quantizations",
                "names no GGUF type (add GGUF or ggml types such as Q4_K)".into(),
            ));
        }
        if let Some(conn) = &self.connection {
            if conn.host.trim().is_empty() {
                return Err(bad("connection.host", "must not be empty".into()));
            }
            if conn.port == 0 {
                return Err(bad("connection.port", "must be 1..65535, found 0".into()));
            }
            if conn.runtime_target.split('-').count() < 3 {
                return Err(bad(
                    "connection.runtime_target",
                    format!(
                        "'{}' is not a target triple (e.g. aarch64-unknown-linux-musl)",
                        conn.runtime_target
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The recipe types this device allows (every recipe type when the list is empty or has GGUF).
    pub fn allowed_types(&self) -> Vec<GgmlType> {
        let q = &self.supported_quantizations;
        if q.is_empty() || q.iter().any(|s| s.eq_ignore_ascii_case("gguf")) {
            return RECIPE_TYPES.to_vec();
        }
        RECIPE_TYPES
            .iter()
            .copied()
            .filter(|t| q.iter().any(|s| GgmlType::from_name(s) == Some(*t)))
            .collect()
    }

    /// Memory the model may use, bytes: RAM, or Sintra's `vram_gb` when RAM is not given.
    pub fn memory_bytes(&self) -> f64 {
        self.constraints.ram_gb.unwrap_or(self.constraints.vram_gb) * 1e9
    }
}

const KNOWN_SIMD: &[&str] = &[
    "neon",
    "dotprod",
    "i8mm",
    "sve",
    "sve2",
    "fp16",
    "sse3",
    "ssse3",
    "sse4.1",
    "sse4.2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vnni",
    "avxvnni",
];

/// `arm64` and `aarch64` are one architecture; `None` for unknown names.
pub fn normalize_arch(a: &str) -> Option<&'static str> {
    match a.to_ascii_lowercase().as_str() {
        "arm64" | "aarch64" => Some("aarch64"),
        "x86_64" | "amd64" | "x86-64" => Some("x86_64"),
        "armv7" | "armv7l" | "arm" => Some("armv7"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        "name: t\nconstraints: {cpu_arch: arm64, ram_gb: 4, cores: 4, memory_bandwidth_gbps: 10}\n";

    fn err(yaml: &str) -> String {
        Profile::from_yaml(yaml, "p.yaml").unwrap_err().to_string()
    }

    #[test]
    fn every_builtin_profile_parses() {
        for (name, text) in BUILTIN {
            let p = Profile::from_yaml(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!p.allowed_types().is_empty(), "{name}");
        }
    }

    #[test]
    fn bad_profiles_name_the_field() {
        assert!(Profile::from_yaml(GOOD, "p").is_ok());
        let cases = [
            (format!("{GOOD}colour: red\n"), "colour"),
            (
                "name: t\nconstraints: {cpu_arch: arm64, ram_gb: 4, gpu: 1}\n".into(),
                "gpu",
            ),
            (
                "name: t\nconstraints: {cpu_arch: sparc, ram_gb: 4}\n".into(),
                "constraints.cpu_arch",
            ),
            (
                "name: t\nconstraints: {cpu_arch: arm64, ram_gb: -1}\n".into(),
                "constraints.ram_gb",
            ),
            (
                "name: t\nconstraints: {cpu_arch: arm64}\n".into(),
                "constraints.ram_gb",
            ),
            (
                "name: t\nconstraints: {cpu_arch: arm64, ram_gb: 4, cores: 0}\n".into(),
                "constraints.cores",
            ),
            (
                format!("{GOOD}targets: {{min_accuracy_score: 1.5}}\n"),
                "targets.min_accuracy_score",
            ),
            (
                format!("{GOOD}targets: {{min_tokens_per_second: 0}}\n"),
                "targets.min_tokens_per_second",
            ),
            (
                format!("{GOOD}targets: {{max_latency: 3}}\n"),
                "max_latency",
            ),
            (
                format!("{GOOD}targets: {{min_speedup: -2}}\n"),
                "targets.min_speedup",
            ),
            (
                format!("{GOOD}supported_quantizations: [Q4_X]\n"),
                "supported_quantizations",
            ),
            (
                format!("{GOOD}supported_quantizations: [BNB]\n"),
                "supported_quantizations",
            ),
            (
                format!("{GOOD}connection: {{host: pi, runtime_target: aarch64}}\n"),
                "connection.runtime_target",
            ),
            (
                format!("{GOOD}connection: {{host: pi, port: 70000, runtime_target: a-b-c}}\n"),
                "port",
            ),
            (format!("{GOOD}targets: [1, 2]\n"), "targets"),
            ("constraints: {cpu_arch: arm64, ram_gb: 4}\n".into(), "name"),
        ];
        for (yaml, field) in cases {
            let e = err(&yaml);
            assert!(
                e.contains(field),
                "error for {yaml:?} should name {field}: {e}"
            );
            assert!(e.starts_with("p.yaml"), "error should name the file: {e}");
        }
    }

    #[test]
    fn a_relative_speed_target_parses() {
        let p = Profile::from_yaml(&format!("{GOOD}targets: {{min_speedup: 1.5}}\n"), "p").unwrap();
        assert_eq!(p.targets.min_speedup(), Some(1.5));
    }

    #[test]
    fn allowed_types_follow_the_list() {
        let p = Profile::from_yaml(
            &format!("{GOOD}supported_quantizations: [Q4_K, q8_0, BNB]\n"),
            "p",
        )
        .unwrap();
        assert_eq!(p.allowed_types(), vec![GgmlType::Q8_0, GgmlType::Q4_K]);
        let p =
            Profile::from_yaml(&format!("{GOOD}supported_quantizations: [GGUF]\n"), "p").unwrap();
        assert_eq!(p.allowed_types(), RECIPE_TYPES);
    }
}
