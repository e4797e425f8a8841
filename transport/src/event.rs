//! What a transport reports to its driver: messages, unreachable peers and peer metadata.

use std::sync::Arc;

use raft::{Message, NodeId};
use tokio::sync::{Semaphore, mpsc};

use crate::outbox::message_size;

/// One thing that happened on the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A message arrived from `from` (feed it to `Node::step`).
    Message {
        /// The sending peer, as established by the handshake.
        from: NodeId,
        /// The message.
        message: Message,
    },
    /// The connection to `peer` broke or could not be made; messages to it may be lost until
    /// it is back (tell the core with `Node::report_unreachable`). Reported once per outage.
    Unreachable {
        /// The peer.
        peer: NodeId,
    },
    /// A handshake with `peer` completed; `metadata` is what it announced.
    PeerInfo {
        /// The peer.
        peer: NodeId,
        /// The peer's metadata (kvd: its client address).
        metadata: String,
    },
}

/// The receiving end of a transport's events. It ends (`recv` returns `None`) after
/// [`crate::Transport::shutdown`].
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
    budget: Arc<InboundBudget>,
}

impl Events {
    pub(crate) fn new(rx: mpsc::Receiver<Event>, budget: Arc<InboundBudget>) -> Self {
        Self { rx, budget }
    }

    /// Waits for the next event; `None` once the transport has shut down.
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        self.budget.release(event.as_ref());
        event
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        let event = self.rx.try_recv().ok();
        self.budget.release(event.as_ref());
        event
    }

    /// Waits for at least one event and moves up to `limit` ready ones into `buffer`; returns
    /// how many were added (0 once the transport has shut down).
    pub async fn recv_many(&mut self, buffer: &mut Vec<Event>, limit: usize) -> usize {
        let start = buffer.len();
        let added = self.rx.recv_many(buffer, limit).await;
        for event in &buffer[start..] {
            self.budget.release(Some(event));
        }
        added
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        // Readers waiting for room give up instead of waiting forever.
        self.budget.close();
    }
}

/// Bounds the bytes of messages waiting in the event queue: readers take a message's size
/// before queueing it, [`Events`] gives it back when the driver takes the message.
#[derive(Debug)]
pub(crate) struct InboundBudget {
    semaphore: Semaphore,
    limit: usize,
}

impl InboundBudget {
    pub(crate) fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, u32::MAX as usize);
        Self {
            semaphore: Semaphore::new(limit),
            limit,
        }
    }

    /// What `message` costs: its size, capped so that any message can pass alone.
    fn units(&self, message: &Message) -> u32 {
        message_size(message).min(self.limit) as u32
    }

    /// Waits until `message` fits; `false` once the event stream is gone.
    pub(crate) async fn acquire(&self, message: &Message) -> bool {
        match self.semaphore.acquire_many(self.units(message)).await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self, event: Option<&Event>) {
        if let Some(Event::Message { message, .. }) = event {
            self.semaphore.add_permits(self.units(message) as usize);
        }
    }

    fn close(&self) {
        self.semaphore.close();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::conformance::sample;

    #[tokio::test]
    async fn budget_holds_readers_back_until_the_driver_takes_messages() {
        let budget = InboundBudget::new(1500);
        let message = sample::append(1, 1000);
        assert!(budget.acquire(&message).await);
        let blocked =
            tokio::time::timeout(Duration::from_millis(20), budget.acquire(&message)).await;
        assert!(blocked.is_err(), "a second message must wait for room");
        budget.release(Some(&Event::Message {
            from: 1,
            message: message.clone(),
        }));
        assert!(budget.acquire(&message).await);
        budget.close();
        assert!(!budget.acquire(&sample::heartbeat(1)).await);
    }

    #[tokio::test]
    async fn a_message_above_the_budget_passes_alone() {
        let budget = InboundBudget::new(100);
        let huge = sample::append(1, 10_000);
        assert!(budget.acquire(&huge).await);
        budget.release(Some(&Event::Message {
            from: 1,
            message: huge.clone(),
        }));
        assert!(budget.acquire(&huge).await);
    }
}
