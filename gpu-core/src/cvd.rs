//! `CUDA_VISIBLE_DEVICES`: reading what Slurm, Kubernetes or the user already
//! set, and writing a selection back.
//!
//! Parsing follows the CUDA runtime (as PyTorch's `_parse_visible_devices`
//! re-implements it): tokens are comma separated; the first token decides
//! the form (`GPU-` UUIDs, `MIG-` UUIDs, or ordinals); an ordinal is read like
//! `strtoul` (`1gpu` is `1`); UUIDs may be abbreviated to any unique prefix;
//! the first invalid, unknown or ambiguous token ends the list (it and
//! everything after it are ignored); a device listed twice hides every device;
//! an empty value hides every device.
//!
//! Ordinals are read as NVML indices, which is what they mean under
//! `CUDA_DEVICE_ORDER=PCI_BUS_ID`; gpusel sets that whenever it writes ordinals.

use std::fmt;

use crate::model::Gpu;

/// The environment variable CUDA reads to choose devices.
pub const CUDA_VISIBLE_DEVICES: &str = "CUDA_VISIBLE_DEVICES";
/// The environment variable that makes CUDA ordinals follow PCI bus (NVML) order.
pub const CUDA_DEVICE_ORDER: &str = "CUDA_DEVICE_ORDER";
/// The value of [`CUDA_DEVICE_ORDER`] gpusel writes with ordinals.
pub const PCI_BUS_ID: &str = "PCI_BUS_ID";

/// One device made visible by one token of `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleEntry {
    /// The token as written (trimmed), reused when writing a subset.
    pub token: String,
    /// UUID of the GPU or MIG device the token names.
    pub uuid: String,
}

/// Why some or all of `CUDA_VISIBLE_DEVICES` has no effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CvdProblem {
    /// A token is neither an ordinal nor a UUID of the list's form.
    Invalid {
        /// The offending token.
        token: String,
    },
    /// A token names no device of this machine.
    Unknown {
        /// The offending token.
        token: String,
    },
    /// A UUID prefix matches more than one device.
    Ambiguous {
        /// The offending token.
        token: String,
    },
    /// A device is listed twice: CUDA then shows no device at all.
    Duplicate {
        /// The repeated token.
        token: String,
    },
}

impl CvdProblem {
    /// The token at fault.
    pub fn token(&self) -> &str {
        match self {
            CvdProblem::Invalid { token }
            | CvdProblem::Unknown { token }
            | CvdProblem::Ambiguous { token }
            | CvdProblem::Duplicate { token } => token,
        }
    }
}

impl fmt::Display for CvdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CvdProblem::Invalid { token } => write!(
                f,
                "'{token}' is not a GPU index, GPU-UUID or MIG-UUID of the list's form; CUDA ignores it and every token after it"
            ),
            CvdProblem::Unknown { token } => write!(
                f,
                "'{token}' names no GPU on this machine; CUDA ignores it and every token after it"
            ),
            CvdProblem::Ambiguous { token } => write!(
                f,
                "'{token}' matches more than one device; CUDA ignores it and every token after it (write more of the UUID)"
            ),
            CvdProblem::Duplicate { token } => write!(
                f,
                "'{token}' is listed twice, and CUDA then hides every GPU"
            ),
        }
    }
}

/// The devices a process may use, as `CUDA_VISIBLE_DEVICES` decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visible {
    /// The raw value, `None` when the variable is unset.
    pub value: Option<String>,
    /// The visible devices in CUDA's order; `None` means every device.
    pub entries: Option<Vec<VisibleEntry>>,
    /// What made part of the value ineffective, if anything.
    pub problem: Option<CvdProblem>,
}

impl Visible {
    /// Every device is visible (the variable is unset).
    pub fn all() -> Self {
        Visible {
            value: None,
            entries: None,
            problem: None,
        }
    }

    /// Resolves `value` (the variable's content, `None` when unset) against `gpus`.
    pub fn parse(value: Option<&str>, gpus: &[Gpu]) -> Self {
        let Some(raw) = value else {
            return Visible::all();
        };
        let (entries, problem) = parse_tokens(raw, gpus);
        Visible {
            value: Some(raw.to_string()),
            entries: Some(entries),
            problem,
        }
    }

    /// Whether the variable restricts the devices at all.
    pub fn is_restricted(&self) -> bool {
        self.entries.is_some()
    }

    /// Whether the device with `uuid` (whose parent GPU is `parent_uuid`, for
    /// a MIG device) is visible.
    pub fn contains(&self, uuid: &str, parent_uuid: Option<&str>) -> bool {
        self.entries.is_none() || self.position(uuid, parent_uuid).is_some()
    }

    /// Where the device with `uuid` (or its parent GPU `parent_uuid`) stands
    /// in the variable's list; `None` when unset or not listed.
    pub fn position(&self, uuid: &str, parent_uuid: Option<&str>) -> Option<usize> {
        self.entries.as_ref()?.iter().position(|e| {
            e.uuid.eq_ignore_ascii_case(uuid)
                || parent_uuid.is_some_and(|p| e.uuid.eq_ignore_ascii_case(p))
        })
    }

    /// The token that made `uuid` visible, to write it back unchanged.
    pub fn token_for(&self, uuid: &str) -> Option<&str> {
        self.entries
            .as_ref()?
            .iter()
            .find(|e| e.uuid.eq_ignore_ascii_case(uuid))
            .map(|e| e.token.as_str())
    }

    /// The problem, unless it is a deliberate way of hiding every GPU
    /// (`CUDA_VISIBLE_DEVICES=` or `=-1`), which deserves no warning.
    pub fn warning(&self) -> Option<&CvdProblem> {
        let problem = self.problem.as_ref()?;
        let deliberate = matches!(problem, CvdProblem::Invalid { token } if token.is_empty() || token.starts_with('-'))
            && self.entries.as_ref().is_some_and(|e| e.is_empty());
        (!deliberate).then_some(problem)
    }
}

fn parse_tokens(raw: &str, gpus: &[Gpu]) -> (Vec<VisibleEntry>, Option<CvdProblem>) {
    let mut entries: Vec<VisibleEntry> = Vec::new();
    if raw.trim().is_empty() {
        return (entries, None);
    }
    let first = raw.trim_start();
    let form = if starts_with_ci(first, "GPU-") {
        Form::GpuUuid
    } else if starts_with_ci(first, "MIG-") {
        Form::MigUuid
    } else {
        Form::Ordinal
    };
    for piece in raw.split(',') {
        let token = piece.trim();
        let resolved = match form {
            Form::Ordinal => resolve_ordinal(token, gpus),
            Form::GpuUuid | Form::MigUuid => resolve_uuid(token, form, gpus),
        };
        let uuid = match resolved {
            Ok(uuid) => uuid,
            Err(problem) => return (entries, Some(problem)),
        };
        if entries.iter().any(|e| e.uuid.eq_ignore_ascii_case(&uuid)) {
            return (
                Vec::new(),
                Some(CvdProblem::Duplicate {
                    token: token.to_string(),
                }),
            );
        }
        entries.push(VisibleEntry {
            token: token.to_string(),
            uuid,
        });
    }
    (entries, None)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Ordinal,
    GpuUuid,
    MigUuid,
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

fn resolve_ordinal(token: &str, gpus: &[Gpu]) -> Result<String, CvdProblem> {
    let invalid = || CvdProblem::Invalid {
        token: token.to_string(),
    };
    // strtoul: optional '+', then the leading digits; the rest is ignored.
    let unsigned = token.strip_prefix('+').unwrap_or(token);
    let digits: &str = &unsigned[..unsigned
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unsigned.len())];
    if digits.is_empty() {
        return Err(invalid());
    }
    let Ok(ordinal) = digits.parse::<u32>() else {
        return Err(CvdProblem::Unknown {
            token: token.to_string(),
        });
    };
    gpus.iter()
        .find(|g| g.index == ordinal)
        .map(|g| g.uuid.clone())
        .ok_or_else(|| CvdProblem::Unknown {
            token: token.to_string(),
        })
}

fn resolve_uuid(token: &str, form: Form, gpus: &[Gpu]) -> Result<String, CvdProblem> {
    let prefix = if form == Form::GpuUuid {
        "GPU-"
    } else {
        "MIG-"
    };
    if !starts_with_ci(token, prefix) {
        return Err(CvdProblem::Invalid {
            token: token.to_string(),
        });
    }
    let candidates: Vec<&str> = if form == Form::GpuUuid {
        gpus.iter().map(|g| g.uuid.as_str()).collect()
    } else {
        gpus.iter()
            .flat_map(|g| g.mig_devices.iter().map(|m| m.uuid.as_str()))
            .collect()
    };
    let mut found: Option<&str> = None;
    for uuid in candidates {
        if starts_with_ci(uuid, token) {
            if found.is_some() {
                return Err(CvdProblem::Ambiguous {
                    token: token.to_string(),
                });
            }
            found = Some(uuid);
        }
    }
    found
        .map(str::to_string)
        .ok_or_else(|| CvdProblem::Unknown {
            token: token.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gpus(n: u32) -> Vec<Gpu> {
        (0..n)
            .map(|i| {
                Gpu::new(
                    i,
                    format!("GPU-{i}a{i}b0000-0000-0000-0000-00000000000{i}"),
                    "T",
                )
            })
            .collect()
    }

    fn tokens(v: &Visible) -> Vec<&str> {
        v.entries
            .as_ref()
            .unwrap()
            .iter()
            .map(|e| e.token.as_str())
            .collect()
    }

    #[test]
    fn unset_means_all() {
        let v = Visible::parse(None, &gpus(4));
        assert!(!v.is_restricted());
        assert!(v.contains("GPU-anything", None));
    }

    #[test]
    fn empty_hides_everything_quietly() {
        let v = Visible::parse(Some(""), &gpus(4));
        assert_eq!(tokens(&v), Vec::<&str>::new());
        assert!(v.warning().is_none());
        let v = Visible::parse(Some("-1"), &gpus(4));
        assert_eq!(tokens(&v), Vec::<&str>::new());
        assert!(v.warning().is_none());
    }

    #[test]
    fn ordinals_with_spaces_and_strtoul() {
        let g = gpus(4);
        let v = Visible::parse(Some("2, 0,1gpu"), &g);
        assert_eq!(tokens(&v), ["2", "0", "1gpu"]);
        assert_eq!(v.entries.as_ref().unwrap()[0].uuid, g[2].uuid);
        assert!(v.problem.is_none());
    }

    #[test]
    fn first_invalid_token_ends_the_list() {
        let v = Visible::parse(Some("1,foo,2"), &gpus(4));
        assert_eq!(tokens(&v), ["1"]);
        assert_eq!(
            v.warning(),
            Some(&CvdProblem::Invalid {
                token: "foo".into()
            })
        );
        let v = Visible::parse(Some("1,9,2"), &gpus(4));
        assert_eq!(tokens(&v), ["1"]);
        assert!(matches!(v.problem, Some(CvdProblem::Unknown { .. })));
        let v = Visible::parse(Some("3,-1,2"), &gpus(4));
        assert_eq!(tokens(&v), ["3"]);
        assert!(v.warning().is_some());
    }

    #[test]
    fn duplicate_hides_everything() {
        let v = Visible::parse(Some("1,2,1"), &gpus(4));
        assert_eq!(tokens(&v), Vec::<&str>::new());
        assert!(matches!(v.warning(), Some(CvdProblem::Duplicate { .. })));
    }

    #[test]
    fn uuid_prefixes() {
        let g = gpus(3);
        let v = Visible::parse(Some("GPU-2a2b,GPU-0"), &g);
        assert_eq!(tokens(&v), ["GPU-2a2b", "GPU-0"]);
        assert_eq!(v.token_for(&g[0].uuid), Some("GPU-0"));
        assert_eq!(v.token_for(&g[1].uuid), None);
        let v = Visible::parse(Some("GPU-"), &g);
        assert!(matches!(v.problem, Some(CvdProblem::Ambiguous { .. })));
        // a list in UUID form stops at an ordinal
        let v = Visible::parse(Some("GPU-1,0"), &g);
        assert_eq!(tokens(&v), ["GPU-1"]);
    }

    #[test]
    fn mig_uuids() {
        let mut g = gpus(2);
        g[1].mig_mode = Some(true);
        g[1].mig_devices.push(crate::model::MigDevice {
            index: 0,
            uuid: "MIG-aaaa-1111".into(),
            profile: Some("1g.10gb".into()),
            gpu_instance_id: None,
            compute_instance_id: None,
            memory_total: None,
            memory_used: None,
            memory_free: None,
            processes: None,
            lease: None,
        });
        let v = Visible::parse(Some("MIG-aaaa"), &g);
        assert_eq!(v.entries.as_ref().unwrap()[0].uuid, "MIG-aaaa-1111");
        assert!(v.contains("MIG-aaaa-1111", Some(&g[1].uuid)));
        assert!(!v.contains(&g[0].uuid, None));
    }

    proptest! {
        #[test]
        fn parser_never_panics_and_entries_are_distinct(s in "[0-9GPUMI,a-f +-]{0,30}|\\PC{0,30}") {
            let g = gpus(4);
            let v = Visible::parse(Some(&s), &g);
            let entries = v.entries.unwrap();
            let mut seen = std::collections::HashSet::new();
            for e in &entries {
                prop_assert!(seen.insert(e.uuid.clone()));
                prop_assert!(g.iter().any(|x| x.uuid == e.uuid));
            }
        }
    }
}
