//! What one node's answer may hold, checked before the snapshot is built.
//!
//! The body cap bounds the bytes, not what they become: 16 MiB of JSON can
//! name 40,000 GPUs, which a master turns into a model, a page and a million
//! `/metrics` series (it took a master to 755 MB). So the body is first read
//! without building anything (every string and list only measured), and an
//! answer over these limits is refused whole, naming the limit.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};

/// The most GPUs one node may report.
pub const MAX_GPUS: usize = 1024;
/// The most MIG devices one GPU may report (the largest GPUs have 7).
pub const MAX_MIG_DEVICES: usize = 64;
/// The most processes one device may report.
pub const MAX_PROCESSES: usize = 1024;
/// The longest name (host, GPU name, UUID, bus id, driver, provider, MIG
/// profile), in bytes: these become label values on every series of a GPU.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest process name or user name, in bytes (a path at most).
pub const MAX_PROCESS_TEXT_BYTES: usize = 4096;

/// What is over a limit, as the error says it: `reports 40000 GPUs, more
/// than the 1024 a node may have`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit(pub String);

impl fmt::Display for OverLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Measures `body` against the limits. `Ok` also when the body is not a
/// snapshot at all: the real parse says what is wrong with it then.
pub fn check(body: &[u8]) -> Result<(), OverLimit> {
    let Ok(shape) = serde_json::from_slice::<SnapshotShape>(body) else {
        return Ok(());
    };
    let too_long = |what: &str, len: usize, max: usize| {
        (len > max).then(|| {
            OverLimit(format!(
                "reports a {what} of {len} bytes, more than the {max} it may have"
            ))
        })
    };
    let names = [
        ("host name", shape.host.0),
        ("provider name", shape.provider.0),
        ("driver version", shape.driver_version.0),
        ("CUDA driver version", shape.cuda_driver_version.0),
        ("GPU UUID", shape.gpus.worst.uuid.0),
        ("GPU name", shape.gpus.worst.name.0),
        ("PCI bus id", shape.gpus.worst.pci_bus_id.0),
        ("MIG UUID", shape.gpus.worst.mig_devices.worst.uuid.0),
        ("MIG profile", shape.gpus.worst.mig_devices.worst.profile.0),
    ];
    let gpu = &shape.gpus.worst;
    let processes = gpu
        .processes
        .worst
        .max(&gpu.mig_devices.worst.processes.worst);
    let texts = [
        ("process name", processes.name.0),
        ("user name", processes.user.0),
    ];
    if shape.gpus.len > MAX_GPUS {
        return Err(OverLimit(format!(
            "reports {} GPUs, more than the {MAX_GPUS} a node may have",
            shape.gpus.len
        )));
    }
    if gpu.mig_devices.len > MAX_MIG_DEVICES {
        return Err(OverLimit(format!(
            "reports a GPU with {} MIG devices, more than the {MAX_MIG_DEVICES} a GPU may have",
            gpu.mig_devices.len
        )));
    }
    let most = gpu.processes.len.max(gpu.mig_devices.worst.processes.len);
    if most > MAX_PROCESSES {
        return Err(OverLimit(format!(
            "reports a device with {most} processes, more than the {MAX_PROCESSES} a device may have"
        )));
    }
    let over = names
        .iter()
        .find_map(|(what, len)| too_long(what, *len, MAX_NAME_BYTES))
        .or_else(|| {
            texts
                .iter()
                .find_map(|(what, len)| too_long(what, *len, MAX_PROCESS_TEXT_BYTES))
        });
    match over {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A string's length in bytes (0 for null or absent), read without copying.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Len(usize);

impl<'de> Deserialize<'de> for Len {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Len;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or null")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Len, E> {
                Ok(Len(s.len()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_none<E: de::Error>(self) -> Result<Len, E> {
                Ok(Len(0))
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Len, D::Error> {
                d.deserialize_str(V)
            }
        }
        d.deserialize_option(V)
    }
}

/// The largest of two shapes, field by field.
trait Worst: Default {
    fn worst(self, other: Self) -> Self;
}

/// A list's length and its worst element, read one element at a time (0
/// and the default for null or absent).
#[derive(Debug, Default)]
struct Many<T> {
    len: usize,
    worst: T,
}

impl<'de, T: Deserialize<'de> + Worst> Deserialize<'de> for Many<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Worst> Visitor<'de> for V<T> {
            type Value = Many<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list or null")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Many<T>, A::Error> {
                let mut many = Many::<T>::default();
                while let Some(item) = seq.next_element::<T>()? {
                    many.len += 1;
                    many.worst = std::mem::take(&mut many.worst).worst(item);
                }
                Ok(many)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Many<T>, E> {
                Ok(Many::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Many<T>, E> {
                Ok(Many::default())
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Many<T>, D::Error> {
                d.deserialize_seq(self)
            }
        }
        d.deserialize_option(V(PhantomData))
    }
}

impl<T: Worst> Worst for Many<T> {
    fn worst(self, other: Self) -> Self {
        Many {
            len: self.len.max(other.len),
            worst: self.worst.worst(other.worst),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct SnapshotShape {
    #[serde(default)]
    host: Len,
    #[serde(default)]
    provider: Len,
    #[serde(default)]
    driver_version: Len,
    #[serde(default)]
    cuda_driver_version: Len,
    #[serde(default)]
    gpus: Many<GpuShape>,
}

#[derive(Debug, Default, Deserialize)]
struct GpuShape {
    #[serde(default)]
    uuid: Len,
    #[serde(default)]
    name: Len,
    #[serde(default)]
    pci_bus_id: Len,
    #[serde(default)]
    processes: Many<ProcessShape>,
    #[serde(default)]
    mig_devices: Many<MigShape>,
}

impl Worst for GpuShape {
    fn worst(self, o: Self) -> Self {
        GpuShape {
            uuid: self.uuid.max(o.uuid),
            name: self.name.max(o.name),
            pci_bus_id: self.pci_bus_id.max(o.pci_bus_id),
            processes: self.processes.worst(o.processes),
            mig_devices: self.mig_devices.worst(o.mig_devices),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct MigShape {
    #[serde(default)]
    uuid: Len,
    #[serde(default)]
    profile: Len,
    #[serde(default)]
    processes: Many<ProcessShape>,
}

impl Worst for MigShape {
    fn worst(self, o: Self) -> Self {
        MigShape {
            uuid: self.uuid.max(o.uuid),
            profile: self.profile.max(o.profile),
            processes: self.processes.worst(o.processes),
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct ProcessShape {
    #[serde(default)]
    name: Len,
    #[serde(default)]
    user: Len,
    /// Measured by the body cap alone: a master shows none unless told to.
    #[serde(default, rename = "command_line")]
    _command_line: Option<IgnoredAny>,
}

impl ProcessShape {
    fn max(&self, o: &Self) -> Self {
        ProcessShape {
            name: self.name.max(o.name),
            user: self.user.max(o.user),
            _command_line: None,
        }
    }
}

impl Worst for ProcessShape {
    fn worst(self, o: Self) -> Self {
        self.max(&o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/lab-8xa100.json"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    fn check_json(v: &serde_json::Value) -> Result<(), OverLimit> {
        check(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn real_snapshots_pass() {
        assert_eq!(check_json(&lab()), Ok(()));
        let mig = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../examples/mig-2xh100.json"
        ))
        .unwrap();
        assert_eq!(check(&mig), Ok(()));
        // Not snapshots: for the real parse to explain.
        assert_eq!(check(b"<html>"), Ok(()));
        assert_eq!(check(b"{\"gpus\": 3}"), Ok(()));
    }

    #[test]
    fn each_limit_is_named() {
        let mut many = lab();
        let gpu = many["gpus"][0].clone();
        many["gpus"] = serde_json::Value::Array(vec![gpu.clone(); MAX_GPUS + 1]);
        assert_eq!(
            check_json(&many).unwrap_err().0,
            "reports 1025 GPUs, more than the 1024 a node may have"
        );
        let mut long = lab();
        long["gpus"][3]["name"] = "x".repeat(300).into();
        assert_eq!(
            check_json(&long).unwrap_err().0,
            "reports a GPU name of 300 bytes, more than the 256 it may have"
        );
        let mut busy = lab();
        let p = busy["gpus"][0]["processes"][0].clone();
        busy["gpus"][5]["processes"] = serde_json::Value::Array(vec![p; MAX_PROCESSES + 1]);
        assert!(
            check_json(&busy)
                .unwrap_err()
                .0
                .contains("a device with 1025 processes"),
        );
        let mut user = lab();
        user["gpus"][0]["processes"][0]["user"] = "u".repeat(5000).into();
        assert!(
            check_json(&user)
                .unwrap_err()
                .0
                .contains("user name of 5000 bytes")
        );
    }
}
