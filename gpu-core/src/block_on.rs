//! Calling a provider without an async runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

/// Wakes the thread blocked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to completion on the current thread, parking the thread
/// while the future waits, and returns its output: a way to call a
/// [`GpuInfoProvider`](crate::GpuInfoProvider) from synchronous code without
/// bringing an async runtime.
///
/// Meant for local providers (NVML, nvidia-smi, snapshot files, exec
/// plugins), which do their work synchronously inside `snapshot()`. A
/// provider that needs a runtime's I/O or timers (the HTTP provider, which
/// needs tokio's) must be driven by that runtime instead. Do not call it from
/// inside async code: it blocks the thread, and with it that runtime's
/// worker.
///
/// ```
/// use gpusel_core::{FileProvider, GpuInfoProvider, Gpu, Snapshot};
///
/// # let tmp = tempfile::tempdir().unwrap();
/// let path = tmp.path().join("snapshot.json");
/// let mut snapshot = Snapshot::new("node1", "example");
/// snapshot.gpus.push(Gpu::new(0, "GPU-0", "NVIDIA A100"));
/// std::fs::write(&path, serde_json::to_string(&snapshot).unwrap()).unwrap();
///
/// let provider = FileProvider::new(&path);
/// let read = gpusel_core::block_on(provider.snapshot()).unwrap();
/// assert_eq!(read.gpus[0].uuid, "GPU-0");
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut context = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut context) {
            Poll::Ready(output) => return output,
            // A wake that came before the park makes the park return at once.
            Poll::Pending => thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Pending until another thread sets its flag and wakes it.
    struct Flagged {
        flag: Arc<AtomicBool>,
        started: bool,
    }

    impl Future for Flagged {
        type Output = &'static str;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            if self.flag.load(Ordering::SeqCst) {
                return Poll::Ready("woken");
            }
            if !self.started {
                self.started = true;
                let (flag, waker) = (self.flag.clone(), cx.waker().clone());
                thread::spawn(move || {
                    thread::sleep(std::time::Duration::from_millis(20));
                    flag.store(true, Ordering::SeqCst);
                    waker.wake();
                });
            }
            Poll::Pending
        }
    }

    #[test]
    fn a_future_woken_from_another_thread_completes() {
        let flag = Arc::new(AtomicBool::new(false));
        assert_eq!(
            block_on(Flagged {
                flag,
                started: false
            }),
            "woken"
        );
        assert_eq!(block_on(async { 6 * 7 }), 42);
    }
}
