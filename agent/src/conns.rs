//! The open connections, and which to shed when there are too many.
//!
//! At the cap, the server closes the oldest connection that is not in the
//! middle of a request (still sending its headers, or idle between two
//! requests) to make room for the new one, rather than leaving the new one
//! waiting: otherwise a thousand clients sending their headers a byte at a
//! time (slowloris) hold every slot, and nobody else is answered. A
//! connection that has sent its request is only closed by the timeouts, and
//! a new one is given [`MIN_AGE`] to send its request before it can be shed:
//! a client that is not slow on purpose is never shed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

/// How long a new connection has to send its request before it may be
/// shed. At the cap, connections are shed at most `cap / MIN_AGE` times a
/// second (4096 a second at 1024 connections): a flood of them queues in
/// the listen backlog instead of shedding the newcomers before they speak.
pub(crate) const MIN_AGE: Duration = Duration::from_millis(250);

/// The table of open connections, oldest first.
#[derive(Debug)]
pub(crate) struct Conns {
    cap: usize,
    min_age: Duration,
    table: Mutex<Table>,
    /// Told whenever a connection closes or finishes a request.
    freed: Notify,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Entry>,
    shed: u64,
}

#[derive(Debug)]
struct Entry {
    opened: Instant,
    busy: Arc<AtomicBool>,
    shed: oneshot::Sender<()>,
}

/// One open connection's place in the table; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Slot {
    conns: Arc<Conns>,
    id: u64,
    /// Whether a request is being answered.
    busy: Arc<AtomicBool>,
    /// Completes when the connection is shed.
    pub(crate) shed: oneshot::Receiver<()>,
}

impl Conns {
    /// A table for at most `cap` connections.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Self::with_min_age(cap, MIN_AGE)
    }

    /// A table for at most `cap` connections, shedding none younger than
    /// `min_age`.
    pub(crate) fn with_min_age(cap: usize, min_age: Duration) -> Arc<Self> {
        Arc::new(Conns {
            cap: cap.max(1),
            min_age,
            table: Mutex::new(Table::default()),
            freed: Notify::new(),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        match self.table.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Waits until there is room for one more connection: at once below the
    /// cap, else by shedding the oldest connection not answering a request
    /// (once it is [`MIN_AGE`] old), else (every connection answering one)
    /// until one finishes.
    pub(crate) async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            let wait = {
                let mut t = self.table();
                if t.open.len() < self.cap {
                    return;
                }
                let oldest_idle = t
                    .open
                    .iter()
                    .find(|(_, e)| !e.busy.load(Ordering::Acquire))
                    .map(|(id, e)| (*id, e.opened.elapsed()));
                match oldest_idle {
                    Some((id, age)) if age >= self.min_age => {
                        if let Some(entry) = t.open.remove(&id) {
                            t.shed += 1;
                            let _ = entry.shed.send(());
                        }
                        return;
                    }
                    Some((_, age)) => Some(self.min_age - age),
                    None => None,
                }
            };
            match wait {
                Some(young) => {
                    tokio::select! {
                        () = tokio::time::sleep(young) => {}
                        () = freed => {}
                    }
                }
                None => freed.await,
            }
        }
    }

    /// Registers a new connection (after [`room`](Self::room)).
    pub(crate) fn open(self: &Arc<Self>) -> Slot {
        let (tx, rx) = oneshot::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let mut t = self.table();
        let id = t.next;
        t.next += 1;
        t.open.insert(
            id,
            Entry {
                opened: Instant::now(),
                busy: Arc::clone(&busy),
                shed: tx,
            },
        );
        Slot {
            conns: Arc::clone(self),
            id,
            busy,
            shed: rx,
        }
    }

    /// How many connections have been shed so far.
    #[cfg(test)]
    pub(crate) fn shed_count(&self) -> u64 {
        self.table().shed
    }
}

impl Slot {
    /// What marks this connection busy.
    pub(crate) fn busy_handle(&self) -> BusyHandle {
        BusyHandle {
            flag: Arc::clone(&self.busy),
            conns: Arc::clone(&self.conns),
        }
    }
}

/// Marks one connection as answering a request.
#[derive(Debug)]
pub(crate) struct BusyHandle {
    flag: Arc<AtomicBool>,
    conns: Arc<Conns>,
}

impl BusyHandle {
    /// Marks a request as being answered until the returned guard drops.
    pub(crate) fn enter(&self) -> Busy {
        self.flag.store(true, Ordering::Release);
        Busy {
            flag: Arc::clone(&self.flag),
            conns: Arc::clone(&self.conns),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns.table().open.remove(&self.id);
        self.conns.freed.notify_waiters();
    }
}

/// A request being answered on a connection, which is not shed meanwhile.
#[derive(Debug)]
pub(crate) struct Busy {
    flag: Arc<AtomicBool>,
    conns: Arc<Conns>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.flag.store(false, Ordering::Release);
        self.conns.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_oldest_idle_connection_makes_room_and_busy_ones_wait() {
        let conns = Conns::with_min_age(2, Duration::ZERO);
        conns.room().await;
        let mut first = conns.open();
        conns.room().await;
        let mut second = conns.open();
        let busy_first = first.busy_handle().enter();
        // At the cap: the oldest idle one (the second) is shed.
        conns.room().await;
        assert_eq!(conns.shed_count(), 1);
        assert!(second.shed.try_recv().is_ok());
        assert!(first.shed.try_recv().is_err());
        drop(second);
        let _third = conns.open();
        let _busy_third = _third.busy_handle().enter();
        // Both busy: room waits until one finishes its request.
        let waiting = tokio::time::timeout(Duration::from_millis(50), conns.room()).await;
        assert!(waiting.is_err(), "no room while every connection is busy");
        let conns2 = Arc::clone(&conns);
        let room = tokio::spawn(async move { conns2.room().await });
        tokio::task::yield_now().await;
        drop(busy_first);
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("room once a request is done")
            .unwrap();
        assert!(first.shed.try_recv().is_ok());
    }

    #[tokio::test]
    async fn a_new_connection_is_not_shed_before_it_could_speak() {
        let conns = Conns::with_min_age(1, Duration::from_millis(200));
        let mut young = conns.open();
        let started = Instant::now();
        conns.room().await;
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(young.shed.try_recv().is_ok());
    }
}
