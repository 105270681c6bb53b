//! The exchange between the subtasks of one node and those of the next.
//!
//! A keyed operator (a grouped aggregation) runs as several subtasks, each
//! owning the keys whose hash falls to it: the exchange in front of it is a
//! hash shuffle. Every row goes to exactly one subtask, so each group's
//! changes reach one subtask in the order they were produced. Watermarks and
//! barriers go to every subtask: each closes its windows on its own, and the
//! node after them aligns their barriers and takes the minimum of their
//! watermarks like for any node with several inputs.

use std::sync::Arc;

use arrow::array::UInt32Array;
use datafusion::common::hash_utils::{RandomState, create_hashes};
use datafusion::physical_expr::PhysicalExpr;
use tokio::sync::mpsc;

use crate::message::{Chunk, Message};
use crate::operator::Result;

/// The same hash in every exchange, so that a key always goes to the same
/// subtask.
const SHUFFLE_STATE: RandomState = RandomState::with_seed(0x5745_4952);

/// Where one subtask sends its output for one downstream node.
#[derive(Debug)]
pub struct Exchange {
    /// One channel per subtask of the downstream node.
    senders: Vec<mpsc::Sender<Message>>,
    /// The key a row's subtask is chosen by (evaluated over the rows sent),
    /// when the downstream node has several subtasks.
    keys: Vec<Arc<dyn PhysicalExpr>>,
    hashes: Vec<u64>,
}

impl Exchange {
    /// To a node of one subtask.
    pub fn forward(sender: mpsc::Sender<Message>) -> Self {
        Exchange {
            senders: vec![sender],
            keys: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// To the subtasks of a keyed node, by the hash of `keys`.
    pub fn hash(senders: Vec<mpsc::Sender<Message>>, keys: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        Exchange {
            senders,
            keys,
            hashes: Vec::new(),
        }
    }

    /// Sends a message on; false when every receiver has gone.
    pub async fn send(&mut self, message: Message) -> Result<bool> {
        if self.senders.len() == 1 {
            return Ok(self.senders[0].send(message).await.is_ok());
        }
        let mut alive = false;
        match message {
            Message::Chunk(chunk) => {
                for (subtask, part) in self.partition(chunk)? {
                    alive |= self.senders[subtask]
                        .send(Message::Chunk(part))
                        .await
                        .is_ok();
                }
                // A chunk that reached nobody proves nothing: ask the channels.
                alive |= self.senders.iter().any(|s| !s.is_closed());
            }
            other => {
                for sender in &self.senders {
                    alive |= sender.send(other.clone()).await.is_ok();
                }
            }
        }
        Ok(alive)
    }

    /// The rows of a chunk for each subtask that gets any.
    fn partition(&mut self, chunk: Chunk) -> Result<Vec<(usize, Chunk)>> {
        let n = self.senders.len();
        let rows = chunk.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|k| k.evaluate(&chunk.batch)?.into_array(rows))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        self.hashes.clear();
        self.hashes.resize(rows, 0);
        create_hashes(&keys, &SHUFFLE_STATE, &mut self.hashes)?;
        let mut indices: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (row, hash) in self.hashes.iter().enumerate() {
            indices[(*hash % n as u64) as usize].push(row as u32);
        }
        let mut parts = Vec::new();
        for (subtask, rows_of) in indices.into_iter().enumerate() {
            if rows_of.len() == rows {
                return Ok(vec![(subtask, chunk)]);
            }
            if !rows_of.is_empty() {
                parts.push((subtask, chunk.take(&UInt32Array::from(rows_of))?));
            }
        }
        Ok(parts)
    }
}

/// Reads a channel into an exchange until either side ends: the shuffle in
/// front of a keyed node that reads a source directly.
pub async fn dispatch(mut input: mpsc::Receiver<Message>, mut exchange: Exchange) -> Result<()> {
    while let Some(message) = input.recv().await {
        if !exchange.send(message).await? {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Barrier, Chunk};
    use arrow::array::{AsArray, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::physical_expr::expressions::Column;

    fn chunk(keys: Vec<i64>) -> Chunk {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, false)]));
        Chunk::inserts(
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(keys))]).expect("batch"),
        )
    }

    fn keys_of(message: Message) -> Vec<i64> {
        match message {
            Message::Chunk(c) => c
                .batch
                .column(0)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            other => panic!("expected rows, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn each_key_goes_to_one_subtask_and_barriers_to_all() {
        let (a, mut ra) = mpsc::channel(16);
        let (b, mut rb) = mpsc::channel(16);
        let key: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let mut exchange = Exchange::hash(vec![a, b], vec![key]);
        let rows: Vec<i64> = (0..100).chain(0..100).collect();
        assert!(
            exchange
                .send(Message::Chunk(chunk(rows)))
                .await
                .expect("send")
        );
        assert!(
            exchange
                .send(Message::Barrier(Barrier::new(7)))
                .await
                .expect("send")
        );
        let first = keys_of(ra.recv().await.expect("rows for a"));
        let second = keys_of(rb.recv().await.expect("rows for b"));
        // Both subtasks get some keys, each key (twice) to one of them only,
        // in the order sent.
        assert!(!first.is_empty() && !second.is_empty());
        assert_eq!(first.len() + second.len(), 200);
        for k in 0..100 {
            let in_first = first.iter().filter(|x| **x == k).count();
            let in_second = second.iter().filter(|x| **x == k).count();
            assert!(
                (in_first, in_second) == (2, 0) || (in_first, in_second) == (0, 2),
                "key {k}: {in_first} + {in_second}"
            );
        }
        for rows in [&first, &second] {
            let half = rows.len() / 2;
            assert_eq!(rows[..half], rows[half..]);
        }
        for receiver in [&mut ra, &mut rb] {
            match receiver.recv().await {
                Some(Message::Barrier(b)) => assert_eq!(b.epoch, 7),
                other => panic!("expected the barrier, got {other:?}"),
            }
        }
    }
}
