//! The value every request reads and one writer replaces whole.

use std::sync::{Arc, RwLock};

/// The latest of something (a round, a node's state, rendered metrics):
/// readers take an `Arc` under a read lock held only to clone the pointer,
/// and the writer swaps in a new value. A writer that panicked cannot leave a
/// half-written value (values are replaced whole), so a poisoned lock is
/// used as it stands rather than passed on as a panic to every request.
#[derive(Debug, Default)]
pub(crate) struct Latest<T>(RwLock<Arc<T>>);

impl<T> Latest<T> {
    pub(crate) fn new(value: T) -> Self {
        Latest(RwLock::new(Arc::new(value)))
    }

    /// The value now.
    pub(crate) fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the value that readers see.
    pub(crate) fn set(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut guard) => *guard = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}
