//! A changelog that jobs subscribe to: the writes of a table or a stream, or
//! the changes of a materialized view.
//!
//! Publishing sends a message to every subscriber in turn and waits for room
//! in their bounded channels, so a slow job slows the writers of its inputs
//! instead of queueing without bound. Messages reach every subscriber in the
//! order they were published. A new subscriber first receives its backfill
//! (the current content) and then every message published after it.
//!
//! A changelog that ends (a bounded source reached its end) closes every
//! subscription: the jobs reading it see their input end and finish.
//!
//! Once a checkpoint has taken its changes ([`Feed::take_changes`]), a feed
//! also keeps the chunks published since, up to a bound, so that the next
//! checkpoint of a table or a view writes only them.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use tokio::sync::{Mutex, mpsc};

use crate::message::{Chunk, Message};

/// Messages a subscriber can have in flight before publishing waits.
pub const CHANNEL_CAPACITY: usize = 16;

/// The subscribers of one changelog.
#[derive(Debug)]
pub struct Feed {
    schema: SchemaRef,
    subscribers: Mutex<Subscribers>,
    changes: std::sync::Mutex<Changes>,
}

/// The chunks published since the last checkpoint took them.
#[derive(Debug, Default)]
struct Changes {
    /// Recording: only after a first checkpoint, and until the bound.
    recording: bool,
    chunks: Vec<Chunk>,
    rows: usize,
    /// Past this many rows, recording stops: a full copy is as cheap.
    limit: usize,
}

#[derive(Debug, Default)]
struct Subscribers {
    senders: Vec<mpsc::Sender<Message>>,
    /// Nothing follows: later subscriptions end after their backfill.
    ended: bool,
    /// Why the changelog failed: later subscriptions get it after their
    /// backfill.
    failed: Option<String>,
}

impl Feed {
    pub fn new(schema: SchemaRef) -> Arc<Feed> {
        Arc::new(Feed {
            schema,
            subscribers: Mutex::new(Subscribers::default()),
            changes: std::sync::Mutex::new(Changes::default()),
        })
    }

    /// The chunks published since the previous call, in order; `None` when
    /// there was no previous call or more than its `limit` rows came (a full
    /// copy of the state is then due). Recording starts again from here, up
    /// to `limit` rows. The caller holds what orders the feed's messages (a
    /// table's writer, a view's delivery).
    pub fn take_changes(&self, limit: usize) -> Option<Vec<Chunk>> {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let taken = changes
            .recording
            .then(|| std::mem::take(&mut changes.chunks));
        *changes = Changes {
            recording: true,
            chunks: Vec::new(),
            rows: 0,
            limit,
        };
        taken
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Sends a message to every subscriber. Subscribers that went away are
    /// forgotten.
    pub async fn publish(&self, message: Message) {
        if let Message::Chunk(chunk) = &message {
            self.record(chunk);
        }
        let subscribers = &mut self.subscribers.lock().await.senders;
        let mut gone = Vec::new();
        for (i, subscriber) in subscribers.iter().enumerate() {
            if subscriber.send(message.clone()).await.is_err() {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            subscribers.swap_remove(i);
        }
    }

    fn record(&self, chunk: &Chunk) {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if !changes.recording {
            return;
        }
        changes.rows += chunk.num_rows();
        if changes.rows > changes.limit {
            changes.recording = false;
            changes.chunks = Vec::new();
        } else {
            changes.chunks.push(chunk.clone());
        }
    }

    /// Whether anyone listens (writers may skip building changes otherwise).
    pub async fn has_subscribers(&self) -> bool {
        !self.subscribers.lock().await.senders.is_empty()
    }

    /// Ends the changelog: current subscriptions close once they have
    /// received what was published, later ones right after their backfill.
    pub async fn end(&self) {
        let mut subscribers = self.subscribers.lock().await;
        subscribers.ended = true;
        subscribers.senders.clear();
    }

    /// Fails the changelog: every subscriber, now and later, receives
    /// [`Message::Fail`] (and the job reading it stops with `reason`), then
    /// its subscription ends.
    pub async fn fail(&self, reason: String) {
        let mut subscribers = self.subscribers.lock().await;
        for subscriber in subscribers.senders.drain(..) {
            let _ = subscriber.send(Message::Fail(reason.clone())).await;
        }
        subscribers.ended = true;
        subscribers.failed = Some(reason);
    }

    /// Whether the changelog has ended.
    pub async fn has_ended(&self) -> bool {
        self.subscribers.lock().await.ended
    }

    /// A new subscription that starts with `backfill`. The caller must hold
    /// whatever keeps the content from changing between reading the backfill
    /// and this call (the table's writer), so that nothing is missed or seen
    /// twice.
    pub async fn subscribe(&self, backfill: Vec<Message>) -> mpsc::Receiver<Message> {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        self.subscribe_with(sender, backfill).await;
        receiver
    }

    /// Subscribes `sender` (whose receiver is being read already: a job
    /// started before it subscribed does not hold up writers meanwhile).
    pub async fn subscribe_with(&self, sender: mpsc::Sender<Message>, backfill: Vec<Message>) {
        // The backfill may not fit in the channel: hand it over from a task
        // that the subscriber drains, and register the subscriber after it so
        // that live messages follow the backfill.
        let mut subscribers = self.subscribers.lock().await;
        let mut backfill = backfill;
        if let Some(reason) = &subscribers.failed {
            backfill.push(Message::Fail(reason.clone()));
        }
        if backfill.is_empty() {
            if !subscribers.ended {
                subscribers.senders.push(sender);
            }
            return;
        }
        let (live, live_receiver) = mpsc::channel(CHANNEL_CAPACITY);
        if !subscribers.ended {
            subscribers.senders.push(live);
        }
        drop(subscribers);
        tokio::spawn(forward(backfill, live_receiver, sender));
    }
}

/// Sends the backfill, then everything published since the subscription.
async fn forward(
    backfill: Vec<Message>,
    mut live: mpsc::Receiver<Message>,
    out: mpsc::Sender<Message>,
) {
    for message in backfill {
        if out.send(message).await.is_err() {
            return;
        }
    }
    loop {
        // End as soon as the subscriber goes, not at the next message.
        let message = tokio::select! {
            message = live.recv() => message,
            () = out.closed() => return,
        };
        let Some(message) = message else { return };
        if out.send(message).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Barrier;
    use arrow::datatypes::Schema;

    #[tokio::test]
    async fn subscribers_get_backfill_then_live_messages_in_order() {
        let feed = Feed::new(Arc::new(Schema::empty()));
        let backfill: Vec<Message> = (0..40)
            .map(|epoch| Message::Barrier(Barrier::new(epoch)))
            .collect();
        let mut receiver = feed.subscribe(backfill).await;
        let publisher = {
            let feed = feed.clone();
            tokio::spawn(async move {
                for epoch in 40..100 {
                    feed.publish(Message::Barrier(Barrier::new(epoch))).await;
                }
            })
        };
        for expected in 0..100 {
            match receiver.recv().await {
                Some(Message::Barrier(b)) => assert_eq!(b.epoch, expected),
                other => panic!("expected barrier {expected}, got {other:?}"),
            }
        }
        publisher.await.expect("publisher");
    }

    #[tokio::test]
    async fn an_ended_feed_closes_subscriptions_after_their_messages() {
        let feed = Feed::new(Arc::new(Schema::empty()));
        let mut before = feed.subscribe(vec![]).await;
        feed.publish(Message::Barrier(Barrier::new(1))).await;
        feed.end().await;
        assert!(matches!(before.recv().await, Some(Message::Barrier(b)) if b.epoch == 1));
        assert!(before.recv().await.is_none(), "the subscription ends");
        let backfill = vec![Message::Barrier(Barrier::new(7))];
        let mut after = feed.subscribe(backfill).await;
        assert!(matches!(after.recv().await, Some(Message::Barrier(b)) if b.epoch == 7));
        assert!(
            after.recv().await.is_none(),
            "a late subscription ends after its backfill"
        );
        assert!(feed.has_ended().await);
    }

    #[tokio::test]
    async fn a_failed_feed_tells_every_subscriber_then_ends() {
        let feed = Feed::new(Arc::new(Schema::empty()));
        let mut before = feed.subscribe(vec![]).await;
        feed.fail("line 3 does not parse".into()).await;
        assert!(matches!(before.recv().await, Some(Message::Fail(r)) if r.contains("line 3")));
        assert!(before.recv().await.is_none());
        let backfill = vec![Message::Barrier(Barrier::new(7))];
        let mut after = feed.subscribe(backfill).await;
        assert!(matches!(after.recv().await, Some(Message::Barrier(b)) if b.epoch == 7));
        assert!(matches!(after.recv().await, Some(Message::Fail(r)) if r.contains("line 3")));
        assert!(after.recv().await.is_none());
    }

    #[tokio::test]
    async fn closed_subscribers_are_dropped() {
        let feed = Feed::new(Arc::new(Schema::empty()));
        let receiver = feed.subscribe(vec![]).await;
        drop(receiver);
        feed.publish(Message::Barrier(Barrier::new(1))).await;
        assert!(!feed.has_subscribers().await);
    }

    #[tokio::test]
    async fn changes_are_kept_between_checkpoints_up_to_a_bound() {
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field};
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let chunk = |values: Vec<i64>| {
            Message::Chunk(Chunk::inserts(
                RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))])
                    .expect("batch"),
            ))
        };
        let feed = Feed::new(schema.clone());
        feed.publish(chunk(vec![1])).await;
        // Nothing was recorded before the first checkpoint.
        assert!(feed.take_changes(3).is_none());
        feed.publish(chunk(vec![2, 3])).await;
        feed.publish(Message::Barrier(Barrier::new(1))).await;
        feed.publish(chunk(vec![4])).await;
        let taken = feed.take_changes(3).expect("recorded");
        let rows: Vec<usize> = taken.iter().map(Chunk::num_rows).collect();
        assert_eq!(rows, vec![2, 1]);
        // Past the bound, a full copy is due.
        feed.publish(chunk(vec![5, 6, 7, 8])).await;
        assert!(feed.take_changes(3).is_none());
        assert_eq!(feed.take_changes(3).map(|c| c.len()), Some(0));
    }
}
