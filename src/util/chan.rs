//! A blocking channel with one receiver: a queue under a mutex and a
//! condition variable, in place of `std::sync::mpsc`.
//!
//! std's channel is lock-free and generic over three flavours (array,
//! list, rendezvous) that every message type instantiates together, ~9 KiB
//! per type; the agent's seven channel types (the command worker's jobs,
//! the image pipeline's buffers, the qcow2 and erase helpers) cost 59,968
//! bytes of the static binary more than this (2026-12-06). They carry at
//! most a few thousand messages a second (1 MiB buffers), where a mutex is
//! as fast: buffers handed through a bounded channel and back, as the
//! image pipeline does, took 8.6–9.5 µs each here against std's 11.2–11.8
//! (thread wake-ups dominate both; 2026-12-06). Same contract as std's: `send` fails once the receiver is
//! gone (handing the message back), `recv` fails once every sender is gone
//! and the queue is empty, a bounded channel's `send` blocks while full,
//! and the messages still queued are dropped with the receiver.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

struct State<T> {
    queue: VecDeque<T>,
    bound: usize,
    senders: usize,
    receiver: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        super::lock(&self.state)
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State<T>>) -> MutexGuard<'a, State<T>> {
        self.changed
            .wait(g)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The sending half; clone it for more senders.
pub struct Sender<T>(Arc<Shared<T>>);

/// The receiving half.
pub struct Receiver<T>(Arc<Shared<T>>);

/// `send` on a channel whose receiver is gone: the message comes back.
pub struct SendError<T>(pub T);

impl<T> std::fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sending on a closed channel")
    }
}

/// `recv` on an empty channel whose senders are all gone.
#[derive(Debug, PartialEq, Eq)]
pub struct RecvError;

/// A channel whose `send` never blocks.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    sync_channel(usize::MAX)
}

/// A channel holding at most `bound` (≥ 1) messages: `send` blocks while
/// it is full.
pub fn sync_channel<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            bound: bound.max(1),
            senders: 1,
            receiver: true,
        }),
        changed: Condvar::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    pub fn send(&self, msg: T) -> Result<(), SendError<T>> {
        let mut s = self.0.lock();
        loop {
            if !s.receiver {
                return Err(SendError(msg));
            }
            if s.queue.len() < s.bound {
                s.queue.push_back(msg);
                self.0.changed.notify_all();
                return Ok(());
            }
            s = self.0.wait(s);
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.lock().senders -= 1;
        self.0.changed.notify_all();
    }
}

impl<T> Receiver<T> {
    pub fn recv(&self) -> Result<T, RecvError> {
        let mut s = self.0.lock();
        loop {
            if let Some(msg) = s.queue.pop_front() {
                self.0.changed.notify_all();
                return Ok(msg);
            }
            if s.senders == 0 {
                return Err(RecvError);
            }
            s = self.0.wait(s);
        }
    }
}

impl<T> Receiver<T> {
    /// A queued message without waiting: `Ok(None)` while the queue is
    /// empty and a sender is left.
    pub fn try_recv(&self) -> Result<Option<T>, RecvError> {
        let mut s = self.0.lock();
        match s.queue.pop_front() {
            Some(msg) => {
                self.0.changed.notify_all();
                Ok(Some(msg))
            }
            None if s.senders == 0 => Err(RecvError),
            None => Ok(None),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut s = self.0.lock();
            s.receiver = false;
            std::mem::take(&mut s.queue)
        };
        self.0.changed.notify_all();
        drop(queued);
    }
}

impl<T> Receiver<T> {
    /// Messages until every sender is gone.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv().ok())
    }
}

/// Messages until every sender is gone.
pub struct IntoIter<T>(Receiver<T>);

impl<T> Iterator for IntoIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.0.recv().ok()
    }
}

impl<T> IntoIterator for Receiver<T> {
    type Item = T;
    type IntoIter = IntoIter<T>;
    fn into_iter(self) -> IntoIter<T> {
        IntoIter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn order_and_disconnection() {
        let (tx, rx) = channel();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        drop(tx);
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Ok(2));
        drop(tx2);
        assert_eq!(rx.recv(), Err(RecvError));
        let (tx, rx) = channel();
        drop(rx);
        assert_eq!(tx.send(5).unwrap_err().0, 5);
    }

    #[test]
    fn bounded_send_waits_for_room() {
        let (tx, rx) = sync_channel(1);
        let t = std::thread::spawn(move || {
            for i in 0..100 {
                tx.send(i).unwrap();
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.0.lock().queue.len(), 1);
        let got: Vec<i32> = rx.into_iter().collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        t.join().unwrap();
    }

    #[test]
    fn a_blocked_sender_fails_when_the_receiver_goes() {
        let (tx, rx) = sync_channel(1);
        tx.send(Arc::new(0)).unwrap();
        let queued = Arc::new(1);
        let t = std::thread::spawn({
            let queued = queued.clone();
            move || tx.send(queued).is_err()
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(t.join().unwrap());
        // the message handed back was dropped by the sender, the queued
        // one with the receiver
        assert_eq!(Arc::strong_count(&queued), 1);
    }

    #[test]
    fn a_receiver_wakes_when_the_last_sender_goes() {
        let (tx, rx) = channel::<u8>();
        let t = std::thread::spawn(move || rx.recv());
        std::thread::sleep(Duration::from_millis(20));
        drop(tx);
        assert_eq!(t.join().unwrap(), Err(RecvError));
    }
}
