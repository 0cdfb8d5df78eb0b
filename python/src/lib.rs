//! `gpusel._native`: the Rust side of the `gpusel` Python package. It holds
//! no logic of its own: arguments become a [`gpusel::Selector`] exactly as
//! the CLI's flags do, over the site's [`gpusel::Config`], and results go
//! back as the JSON the CLI prints. The typed Python API, its classes and
//! its errors live in `python/gpusel/` and call this module.

// Failures are reported, never panicked on (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gpusel::{
    Config, Device, DeviceSpec, GpuInfoProvider, Progress, ProviderError, SelectError, Selection,
    Selector, Snapshot, Verdict, Visible,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

/// An exception class of `gpusel._errors`, made with `args`.
fn error<'py>(py: Python<'py>, class: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    let made = py
        .import("gpusel._errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1(args));
    match made {
        Ok(exception) => PyErr::from_value(exception),
        Err(e) => e,
    }
}

/// A bad argument: `gpusel.UsageError`, a `ValueError`.
fn usage(py: Python<'_>, message: impl Into<String>) -> PyErr {
    error(py, "UsageError", (message.into(),))
}

fn type_error(name: &str, expected: &str, got: &Bound<'_, PyAny>) -> PyErr {
    let kind = got
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    PyTypeError::new_err(format!("{name}= takes {expected}, not {kind}"))
}

/// `repr()` of a value, for messages that name it as the user wrote it.
fn shown(value: &Bound<'_, PyAny>) -> String {
    value
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A number, as Python has it: ints and floats, never bools.
fn number(value: &Bound<'_, PyAny>) -> Option<f64> {
    if value.is_instance_of::<PyBool>() {
        return None;
    }
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        return value.extract::<f64>().ok();
    }
    None
}

/// A size: `"20GiB"` or a number of bytes.
fn size(py: Python<'_>, name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(text) = value.cast::<PyString>() {
        let text = &*text.to_cow()?;
        return gpusel::parse_size(text)
            .map(Some)
            .map_err(|e| usage(py, format!("{name}={}: {e}", shown(value))));
    }
    match number(value) {
        Some(n) if n.is_finite() && n >= 0.0 && n <= u64::MAX as f64 => Ok(Some(n.round() as u64)),
        Some(_) => Err(usage(
            py,
            format!(
                "{name}={}: a size is a number of bytes, 0 or more, or a string such as '20GiB'",
                shown(value)
            ),
        )),
        None => Err(type_error(
            name,
            "a size such as '20GiB' or a number of bytes",
            value,
        )),
    }
}

/// Memory: `"2GiB"`, `"20%"` of the total, or a number of bytes.
fn memory_amount(
    py: Python<'_>,
    name: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<gpusel::MemoryAmount>> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(text) = value.cast::<PyString>() {
        return gpusel::MemoryAmount::parse(&text.to_cow()?)
            .map(Some)
            .map_err(|e| usage(py, format!("{name}={}: {e}", shown(value))));
    }
    Ok(size(py, name, Some(value))?.map(gpusel::MemoryAmount::Bytes))
}

/// A percentage, 0 to 100: `10` or `"10%"`.
fn percent(py: Python<'_>, name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u8>> {
    let Some(value) = value else { return Ok(None) };
    let text = if let Ok(text) = value.cast::<PyString>() {
        text.to_cow()?.into_owned()
    } else if value.is_instance_of::<PyInt>() && !value.is_instance_of::<PyBool>() {
        value.to_string()
    } else {
        return Err(type_error(name, "a percentage such as 10 or '10%'", value));
    };
    gpusel::parse_percent(&text)
        .map(Some)
        .map_err(|e| usage(py, format!("{name}={}: {e}", shown(value))))
}

/// A power: `"80W"` or a number of watts; milliwatts.
fn power(py: Python<'_>, name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<u32>> {
    let Some(value) = value else { return Ok(None) };
    let text = if let Ok(text) = value.cast::<PyString>() {
        text.to_cow()?.into_owned()
    } else if let Some(n) = number(value) {
        format!("{n}W")
    } else {
        return Err(type_error(
            name,
            "a power such as '80W' or a number of watts",
            value,
        ));
    };
    gpusel::parse_power(&text)
        .map(Some)
        .map_err(|e| usage(py, format!("{name}={}: {e}", shown(value))))
}

/// A duration: `"30s"`, `"1h30m"` or a number of seconds, at least `min`.
fn duration(
    py: Python<'_>,
    name: &str,
    value: Option<&Bound<'_, PyAny>>,
    min: Duration,
) -> PyResult<Option<Duration>> {
    let Some(value) = value else { return Ok(None) };
    if let Ok(text) = value.cast::<PyString>() {
        return gpusel::parse_duration_min(&text.to_cow()?, min)
            .map(Some)
            .map_err(|e| usage(py, format!("{name}={}: {e}", shown(value))));
    }
    let Some(seconds) = number(value) else {
        return Err(type_error(
            name,
            "a duration such as '30s' or a number of seconds",
            value,
        ));
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if d >= min => Ok(Some(d)),
        Ok(_) => Err(usage(
            py,
            format!(
                "{name}={}: too short; the least is {}",
                shown(value),
                humantime::format_duration(min)
            ),
        )),
        Err(_) => Err(usage(
            py,
            format!(
                "{name}={}: a duration is a number of seconds, 0 or more, or a string such as '30s'",
                shown(value)
            ),
        )),
    }
}

/// A count of something, 0 or more.
fn whole(py: Python<'_>, name: &str, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<usize>> {
    let Some(value) = value else { return Ok(None) };
    if !value.is_instance_of::<PyInt>() || value.is_instance_of::<PyBool>() {
        return Err(type_error(name, "a whole number", value));
    }
    value.extract::<usize>().map(Some).map_err(|_| {
        usage(
            py,
            format!("{name}={}: write a whole number, 0 or more", shown(value)),
        )
    })
}

/// Devices: `3`, `"0,2"`, `"GPU-5f2c"`, `"3:1"` or a list of those.
fn device_list(
    py: Python<'_>,
    name: &str,
    value: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<DeviceSpec>> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let one = |item: &Bound<'_, PyAny>| -> PyResult<String> {
        if item.is_instance_of::<PyBool>() {
            return Err(type_error(name, "device indices or UUIDs", item));
        }
        if item.is_instance_of::<PyInt>() {
            return Ok(item.to_string());
        }
        match item.cast::<PyString>() {
            Ok(s) => Ok(s.to_cow()?.into_owned()),
            Err(_) => Err(type_error(name, "device indices or UUIDs", item)),
        }
    };
    let parts: Vec<String> =
        if value.is_instance_of::<PyString>() || value.is_instance_of::<PyInt>() {
            vec![one(value)?]
        } else {
            let iter = value.try_iter().map_err(|_| {
                type_error(
                    name,
                    "a device, a string such as '0,2', or a list of devices",
                    value,
                )
            })?;
            let mut parts = Vec::new();
            for item in iter {
                parts.push(one(&item?)?);
            }
            parts
        };
    let joined = parts.join(",");
    let list = DeviceSpec::parse_list(&joined)
        .map_err(|e| usage(py, format!("{name}={}: {e}", shown(value))))?;
    if list.is_empty() {
        return Err(usage(
            py,
            format!(
                "{name}={}: the list is empty; give e.g. [0, 2] or 'GPU-5f2c'",
                shown(value)
            ),
        ));
    }
    Ok(list)
}

fn load_config(py: Python<'_>) -> PyResult<Config> {
    Config::load().map_err(|e| error(py, "ConfigError", (e.to_string(),)))
}

/// Opens the provider `spec` names (or the config's).
fn open_provider(
    py: Python<'_>,
    spec: Option<&str>,
    config: &Config,
) -> PyResult<Box<dyn GpuInfoProvider>> {
    let spec = spec.unwrap_or(&config.provider.value);
    let torch = gpusel::ProviderSpec::parse(spec);
    if torch.name == gpusel::TORCH && torch.argument.is_none() {
        return Err(usage(
            py,
            "provider='torch' is not in the Python package: it would create a CUDA context in this process on every GPU; use provider='nvml' (the default) or 'smi'",
        ));
    }
    gpusel::open(spec, config).map_err(|e| provider_error(py, e))
}

fn provider_error(py: Python<'_>, e: ProviderError) -> PyErr {
    match e {
        ProviderError::UnknownProvider { .. } => usage(py, format!("provider: {e}")),
        ProviderError::NoProvider { ref tried } => error(
            py,
            "ProviderError",
            (format!(
                "no GPU provider works on this machine; give one with provider=, e.g. provider='file:PATH' to read a snapshot{}",
                tried.iter().map(|t| format!("\n  {t}")).collect::<String>()
            ),),
        ),
        other => error(py, "ProviderError", (other.to_string(),)),
    }
}

/// The JSON of one device, as `where=` and `Selection.devices` read it:
/// `{"gpu": ..., "mig": ...}` with the fields of `gpusel list --json`.
fn device_json(device: &Device<'_>) -> serde_json::Value {
    serde_json::json!({ "gpu": device.gpu, "mig": device.mig })
}

/// JSON as Python objects (dict, list, str, int, float, bool, None), so
/// that the Python side needs no JSON parser (importing `json` costs more
/// than a selection).
fn to_py<'py>(py: Python<'py>, value: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    use pyo3::types::{PyDict, PyList};
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u.into_pyobject(py)?.into_any(),
            (None, Some(i)) => i.into_pyobject(py)?.into_any(),
            _ => n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any(),
        },
        Value::String(text) => PyString::new(py, text).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_py(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (key, item) in map {
                dict.set_item(key, to_py(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// What the progress line, the `where=` filter and the cancel test share:
/// the first Python error any of them met, raised once the selection ends.
#[derive(Default, Clone)]
struct Pending(Arc<Mutex<Option<PyErr>>>);

impl Pending {
    fn set(&self, e: PyErr) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn is_set(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn take(&self) -> Option<PyErr> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Writes one line to Python's `sys.stderr` (where a notebook shows it).
fn stderr_line(py: Python<'_>, line: &str) -> PyResult<()> {
    let stderr = py.import("sys")?.getattr("stderr")?;
    if stderr.is_none() {
        return Ok(());
    }
    stderr.call_method1("write", (format!("gpusel: {line}\n"),))?;
    stderr.call_method0("flush")?;
    Ok(())
}

/// A selection made for Python: the leases it holds, until released.
#[pyclass(module = "gpusel._native", frozen)]
struct NativeSelection {
    held: Mutex<Option<Selection>>,
    /// `{"selection": ..., "devices": [...], "host": ..., "provider": ...}`.
    data: serde_json::Value,
}

#[pymethods]
impl NativeSelection {
    /// The selection (`gpusel --json`'s object) and the chosen devices'
    /// state.
    fn data<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.data)
    }

    /// Drops the leases (idempotent); true if they were held until now.
    fn release(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some()
    }

    /// Whether leases are still held (never, for `lease=False`).
    #[getter]
    fn held(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|s| !s.leases().is_empty())
    }
}

/// Everything `select` passes on to the selector, read from Python's
/// arguments first (with the GIL), so that the selection itself runs
/// without it.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (
    count = None, *, mem = None, max_util = None, max_mem_util = None, max_processes = None,
    max_power = None, max_mem_used = None, name = None, devices = None, exclude = None, filter = None,
    strategy = None, provider = None, wait = None, timeout = None, interval = None,
    uuid = false, lease = true, share = false, silent = false, lock_dir = None, seed = None,
    command = None, idle_window = None, unaccounted_memory = None,
))]
fn select(
    py: Python<'_>,
    count: Option<&Bound<'_, PyAny>>,
    mem: Option<&Bound<'_, PyAny>>,
    max_util: Option<&Bound<'_, PyAny>>,
    max_mem_util: Option<&Bound<'_, PyAny>>,
    max_processes: Option<&Bound<'_, PyAny>>,
    max_power: Option<&Bound<'_, PyAny>>,
    max_mem_used: Option<&Bound<'_, PyAny>>,
    name: Option<&Bound<'_, PyAny>>,
    devices: Option<&Bound<'_, PyAny>>,
    exclude: Option<&Bound<'_, PyAny>>,
    filter: Option<Py<PyAny>>,
    strategy: Option<&Bound<'_, PyAny>>,
    provider: Option<&Bound<'_, PyAny>>,
    wait: Option<bool>,
    timeout: Option<&Bound<'_, PyAny>>,
    interval: Option<&Bound<'_, PyAny>>,
    uuid: bool,
    lease: bool,
    share: bool,
    silent: bool,
    lock_dir: Option<PathBuf>,
    seed: Option<u64>,
    command: Option<Vec<String>>,
    idle_window: Option<&Bound<'_, PyAny>>,
    unaccounted_memory: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<NativeSelection>> {
    let count = match count {
        None => gpusel::Count::default(),
        Some(value) if value.is_instance_of::<PyString>() => {
            let text = value.cast::<PyString>()?.to_cow()?.into_owned();
            gpusel::Count::parse(&text)
                .map_err(|e| usage(py, format!("count={}: {e}", shown(value))))?
        }
        Some(value) => match whole(py, "count", Some(value))? {
            Some(n) => NonZeroUsize::new(n)
                .map(gpusel::Count::exactly)
                .ok_or_else(|| usage(py, "count=0: the count must be at least 1"))?,
            None => gpusel::Count::default(),
        },
    };
    let mem = size(py, "mem", mem)?;
    let max_util = percent(py, "max_util", max_util)?;
    let max_mem_util = percent(py, "max_mem_util", max_mem_util)?;
    let max_processes = whole(py, "max_processes", max_processes)?;
    let max_power = power(py, "max_power", max_power)?;
    let max_mem_used = memory_amount(py, "max_mem_used", max_mem_used)?;
    let name = text(name, "name")?;
    let devices = device_list(py, "devices", devices)?;
    let exclude = device_list(py, "exclude", exclude)?;
    let strategy = text(strategy, "strategy")?;
    let provider = text(provider, "provider")?;
    let timeout = duration(py, "timeout", timeout, Duration::ZERO)?;
    let interval = duration(py, "interval", interval, gpusel::config::MIN_INTERVAL)?;
    let idle_window = duration(py, "idle_window", idle_window, Duration::ZERO)?;
    let unaccounted_memory = memory_amount(py, "unaccounted_memory", unaccounted_memory)?;
    if let Some(f) = &filter
        && !f.bind(py).is_callable()
    {
        return Err(type_error("where", "a function of a Device", f.bind(py)));
    }

    let mut config = load_config(py)?;
    if let Some(window) = idle_window {
        config.idle_window = gpusel::Setting::new(window, gpusel::Source::Flag("idle_window"));
    }
    let strategy_name = strategy
        .clone()
        .unwrap_or_else(|| config.strategy.value.clone());
    let from_config = strategy.is_none() && config.strategy.source != gpusel::Source::Default;
    let ranking = gpusel::strategy(&strategy_name).map_err(|e| match from_config {
        true => usage(
            py,
            format!("strategy: {e} (set by {})", config.strategy.source),
        ),
        false => usage(py, format!("strategy: {e}")),
    })?;
    let provider = open_provider(py, provider.as_deref(), &config)?;

    let pending = Pending::default();
    let mut selector = Selector::from_config(&config, ranking)
        .count(count)
        .devices(devices)
        .exclude(exclude)
        .uuids(uuid)
        .lease(lease)
        .share(share);
    if let Some(bytes) = mem {
        selector = selector.min_free_memory(bytes);
    }
    if let Some(pct) = max_util {
        selector = selector.max_utilization(pct);
    }
    if let Some(pct) = max_mem_util {
        selector = selector.max_memory_utilization(pct);
    }
    if let Some(n) = max_processes {
        selector = selector.max_processes(n);
    }
    if let Some(mw) = max_power {
        selector = selector.max_power(mw);
    }
    if let Some(amount) = max_mem_used {
        selector = selector.max_memory_used(amount);
    }
    if let Some(amount) = unaccounted_memory {
        selector = selector.unaccounted_memory(amount);
    }
    if let Some(name) = name {
        selector = selector.name(name);
    }
    if let Some(dir) = lock_dir {
        selector = selector.lock_dir(dir);
    }
    if let Some(interval) = interval {
        selector = selector.interval(interval);
    }
    if let Some(seed) = seed {
        selector = selector.seed(seed);
    }
    if let Some(command) = command {
        selector = selector.command(command);
    }
    // As the CLI's --wait/--timeout/--no-wait over the config's `wait`.
    match (wait, timeout) {
        (Some(false), Some(_)) => {
            return Err(usage(
                py,
                "timeout= limits a wait, and wait=False asks for none; drop one",
            ));
        }
        (_, Some(timeout)) => selector = selector.wait(Some(timeout)),
        (Some(true), None) => selector = selector.wait_configured(),
        (Some(false), None) => selector = selector.no_wait(),
        (None, None) => {}
    }
    if let Some(filter) = filter {
        let pending = pending.clone();
        selector = selector.filter("where=", move |device| {
            if pending.is_set() {
                return false;
            }
            Python::attach(|py| {
                match to_py(py, &device_json(device))
                    .and_then(|d| filter.call1(py, (d,)))
                    .and_then(|r| r.is_truthy(py))
                {
                    Ok(keep) => keep,
                    Err(e) => {
                        pending.set(e);
                        false
                    }
                }
            })
        });
    }
    // Ctrl-C: Python's handler only notes the signal; it is raised here,
    // between tries, where the wait can stop.
    selector = selector.cancel_if({
        let pending = pending.clone();
        move || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    pending.set(e);
                    true
                }
            })
        }
    });
    let waits = selector.waits();
    let interval = selector.poll_interval();
    let told = Arc::new(Mutex::new(false));
    if !silent {
        let told = Arc::clone(&told);
        selector = selector.on_progress(move |progress| {
            let line = match progress {
                Progress::Waiting { verdicts, .. } => {
                    let mut told = told.lock().unwrap_or_else(PoisonError::into_inner);
                    if *told {
                        return;
                    }
                    *told = true;
                    let qualify = verdicts.iter().filter(|v| v.reasons.is_empty()).count();
                    format!(
                        "waiting for {} ({qualify} of {} qualify now), trying every {}; Ctrl-C to stop",
                        count.describe(),
                        verdicts.len(),
                        humantime::format_duration(interval)
                    )
                }
                Progress::ProviderFailed {
                    error,
                    failures,
                    limit,
                    interval,
                    ..
                } => format!(
                    "the provider failed ({failures} of {limit} tries in a row end the wait; trying again in {}): {error}",
                    humantime::format_duration(interval)
                ),
                Progress::VisibleProblem { visible } => match visible.warning() {
                    Some(problem) => format!("warning: CUDA_VISIBLE_DEVICES: {problem}"),
                    None => return,
                },
                _ => return,
            };
            Python::attach(|py| {
                // A closed or broken stderr must not stop the selection.
                let _ = stderr_line(py, &line);
            });
        });
    }

    // The library's own error type, returned once: its size costs nothing here.
    #[allow(clippy::result_large_err)]
    let result = py.detach(|| selector.select_with_snapshot(provider.as_ref()));
    drop(provider);
    if let Some(e) = pending.take() {
        // The user's where= raised, or Ctrl-C: theirs to see, not ours.
        return Err(e);
    }
    match result {
        Ok((selection, snapshot)) => {
            if waits && !silent && *told.lock().unwrap_or_else(PoisonError::into_inner) {
                let _ = stderr_line(py, &format!("got GPU {}", selection.cuda_visible_devices));
            }
            let data = selection_json(&selection, &snapshot);
            Ok(Some(NativeSelection {
                held: Mutex::new(Some(selection)),
                data,
            }))
        }
        Err(SelectError::NoMatch { .. }) if silent => Ok(None),
        Err(SelectError::TimedOut { .. }) if silent => Ok(None),
        Err(e) => Err(select_error(py, e)),
    }
}

fn text(value: Option<&Bound<'_, PyAny>>, name: &str) -> PyResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => match v.cast::<PyString>() {
            Ok(s) => Ok(Some(s.to_cow()?.into_owned())),
            Err(_) => Err(type_error(name, "a string", v)),
        },
    }
}

/// `{"selection": ..., "devices": [...]}`: the selection and, for each
/// chosen device in order, its state at the moment of the choice.
fn selection_json(selection: &Selection, snapshot: &Snapshot) -> serde_json::Value {
    let all = Device::all(&snapshot.gpus);
    let devices: Vec<serde_json::Value> = selection
        .devices
        .iter()
        .filter_map(|chosen| {
            all.iter()
                .find(|d| d.uuid() == chosen.uuid)
                .map(|d| serde_json::json!({ "gpu": d.gpu, "mig": d.mig }))
        })
        .collect();
    serde_json::json!({
        "selection": selection,
        "devices": devices,
        "host": snapshot.host,
        "provider": snapshot.provider,
    })
}

/// The CLI's text for a failed selection, with the arguments (not flags)
/// that get past it.
fn select_error(py: Python<'_>, e: SelectError) -> PyErr {
    match e {
        SelectError::NoMatch { .. } => {
            let (message, verdicts) = no_match_text(&e);
            let verdicts = match to_py(py, &verdicts) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let SelectError::NoMatch {
                requested,
                eligible,
                visible,
                ..
            } = e
            else {
                unreachable!()
            };
            error(
                py,
                "NoGpuError",
                (message, verdicts, requested, eligible, visible),
            )
        }
        SelectError::TimedOut { timeout, last } => {
            let (message, verdicts) = no_match_text(&last);
            let verdicts = match to_py(py, &verdicts) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let (requested, eligible, visible) = match *last {
                SelectError::NoMatch {
                    requested,
                    eligible,
                    visible,
                    ..
                } => (requested, eligible, visible),
                _ => (0, 0, 0),
            };
            error(
                py,
                "WaitTimeout",
                (
                    format!(
                        "timed out after {} waiting: {message}",
                        humantime::format_duration(timeout)
                    ),
                    verdicts,
                    requested,
                    eligible,
                    visible,
                    timeout.as_secs_f64(),
                ),
            )
        }
        SelectError::UnknownDevice { spec, known } => error(
            py,
            "NoGpuError",
            (
                format!(
                    "devices={spec}: no such device on this machine (it has {known}); see `gpusel list`"
                ),
                pyo3::types::PyList::empty(py),
                0usize,
                0usize,
                0usize,
            ),
        ),
        SelectError::Provider(e) => provider_error(py, e),
        SelectError::Lease(e) => error(py, "LeaseError", (lease_text(&e),)),
        SelectError::ShareWithoutMemory(e) => {
            usage(py, format!("{e}: give mem=, e.g. share=True, mem='20GiB'"))
        }
        SelectError::Strategy(e) => {
            let hint = match e.missing {
                Some("min_free_memory") => ": give mem=, e.g. mem='20GiB'",
                _ => "",
            };
            usage(py, format!("{e}{hint}"))
        }
        other => error(py, "Error", (other.to_string(),)),
    }
}

fn lease_text(e: &gpusel::LeaseError) -> String {
    use gpusel::LeaseError as L;
    let hint = match e {
        L::Symlink { .. } => {
            "; give the real directory with lock_dir= (or GPUSEL_LOCK_DIR, or lock_dir in the config)"
        }
        L::NotADirectory { .. } | L::UnsafeMode { .. } => ", or choose another with lock_dir=",
        L::BadOwner { .. } => ", or use another with lock_dir=",
        L::Create { .. } | L::Open { .. } => {
            ", choose another with lock_dir=, or select without a lease (lease=False)"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// The message (headline, one line per device that does not qualify, and
/// the hint the CLI gives) and the verdicts as JSON.
fn no_match_text(e: &SelectError) -> (String, serde_json::Value) {
    let SelectError::NoMatch { verdicts, .. } = e else {
        return (e.to_string(), serde_json::Value::Array(Vec::new()));
    };
    let mut text = e.to_string();
    for v in verdicts.iter().filter(|v| v.explains_a_failure()) {
        text.push_str(&format!("\n  {v}"));
    }
    if e.only_strategy_defaults_keep_out() {
        text.push_str(
            "\n  hint: idle-random takes only idle GPUs; allow some load with max_util=/max_mem_util=/max_processes= (still a random pick among the GPUs that pass), or take the least used now with strategy='least-used'",
        );
    }
    (text, verdicts_json(verdicts))
}

/// The verdicts as `gpusel._errors.Verdict` reads them: each reason as
/// text (as `--explain` prints it) and as data (as `--json` writes it).
fn verdicts_json(verdicts: &[Verdict]) -> serde_json::Value {
    let list: Vec<serde_json::Value> = verdicts
        .iter()
        .map(|v| {
            serde_json::json!({
                "device": v.device,
                "uuid": v.uuid,
                "name": v.name,
                "selected": v.selected,
                "reasons": v.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "details": v.reasons,
            })
        })
        .collect();
    serde_json::Value::from(list)
}

/// The snapshot `gpusel list --json` prints: every GPU, leases filled in
/// from the lock directory. Returns `(snapshot, warning, remote, visible,
/// problem)`: `visible` the UUIDs `CUDA_VISIBLE_DEVICES` leaves visible
/// (`None` for another node's GPUs, which it does not limit), `problem`
/// what is wrong with the variable.
#[pyfunction]
#[pyo3(signature = (provider = None, lock_dir = None))]
fn snapshot<'py>(
    py: Python<'py>,
    provider: Option<&Bound<'py, PyAny>>,
    lock_dir: Option<PathBuf>,
) -> PyResult<SnapshotAnswer<'py>> {
    let provider = text(provider, "provider")?;
    let config = load_config(py)?;
    let provider = open_provider(py, provider.as_deref(), &config)?;
    let taken = py.detach(|| gpusel::block_on(provider.snapshot()));
    let mut snapshot = taken.map_err(|e| provider_error(py, e))?;
    let mut warning = None;
    let remote = provider.is_remote();
    if !remote {
        let dir = lock_dir.unwrap_or_else(|| config.lock_dir.value.clone());
        if let Err(e) = gpusel::add_leases(&mut snapshot, &dir) {
            warning = Some(format!("leases not shown: {}", lease_text(&e)));
        }
    }
    let (visible, problem) = if remote {
        (None, None)
    } else {
        let visible = Visible::from_env(&snapshot.gpus);
        let uuids = Device::all(&snapshot.gpus)
            .iter()
            .filter(|d| visible.contains(d.uuid(), d.mig.map(|_| d.gpu.uuid.as_str())))
            .map(|d| d.uuid().to_string())
            .collect();
        (Some(uuids), visible.warning().map(ToString::to_string))
    };
    let value = serde_json::to_value(&snapshot)
        .map_err(|e| error(py, "Error", (format!("cannot write the snapshot: {e}"),)))?;
    Ok((to_py(py, &value)?, warning, remote, visible, problem))
}

/// What `snapshot` returns.
type SnapshotAnswer<'py> = (
    Bound<'py, PyAny>,
    Option<String>,
    bool,
    Option<Vec<String>>,
    Option<String>,
);

/// Parses a size as `mem=` does, into bytes.
#[pyfunction]
fn parse_size(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(size(py, "size", Some(value))?.unwrap_or_default())
}

/// Parses a duration as `timeout=` does, into seconds.
#[pyfunction]
fn parse_duration(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<f64> {
    Ok(duration(py, "duration", Some(value), Duration::ZERO)?
        .unwrap_or_default()
        .as_secs_f64())
}

/// The strategies, as `(name, description)`.
#[pyfunction]
fn strategies() -> Vec<(&'static str, &'static str)> {
    use gpusel::StrategyKind;
    use strum::IntoEnumIterator;
    StrategyKind::iter()
        .map(|k| (k.name(), k.description()))
        .collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_LOCK_DIR", gpusel::DEFAULT_LOCK_DIR)?;
    m.add_class::<NativeSelection>()?;
    m.add_function(wrap_pyfunction!(select, m)?)?;
    m.add_function(wrap_pyfunction!(snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(parse_size, m)?)?;
    m.add_function(wrap_pyfunction!(parse_duration, m)?)?;
    m.add_function(wrap_pyfunction!(strategies, m)?)?;
    Ok(())
}
