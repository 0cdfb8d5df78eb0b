//! Calling a provider from synchronous code, without an async runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on this thread and returns its output: the
/// documented way to call [`GpuInfoProvider::snapshot`](crate::GpuInfoProvider::snapshot)
/// without a runtime. The built-in local providers (NVML, nvidia-smi, files,
/// plugins) do their work synchronously inside `snapshot`; the `http://`
/// provider brings its own runtime when it is called outside one. Do not call
/// this from inside async code: there, `.await` the provider.
///
/// ```
/// use gpusel_core::{FileProvider, GpuInfoProvider, block_on};
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("snapshot.json");
/// # std::fs::write(&path, serde_json::to_string(&gpusel_core::Snapshot::new("node1", "example")).unwrap()).unwrap();
/// let provider = FileProvider::new(&path);
/// let snapshot = block_on(provider.snapshot()).unwrap();
/// assert_eq!(snapshot.host, "node1");
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => thread::park(),
        }
    }
}
