//! The backlog between a continuous query's job and its client.
//!
//! A client reads at its own pace (a psql user between two `FETCH`es, a
//! driver that stopped polling), but the job of its query reads changelogs
//! that other jobs read too: a materialized view's, a stream's. If the job
//! waited for its client, it would stop taking its inputs, their changelogs
//! would wait for it, and a slow client would stall the view and the writers
//! it reads. So a relay task takes the job's output as fast as the job
//! produces it and queues it for the client; when more than a bound of rows
//! (the `max_client_lag_rows` setting) wait in the queue, the relay stops,
//! the job goes (and with it its subscriptions to the changelogs and its
//! row in `weir_catalog.jobs`), and the client's next read is an error
//! that says why. The relay owns the job: it goes when the relay stops, for
//! that reason or because the client went.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use weir_runtime::{JobStatus, Message};

use crate::error::{WeirError, sqlstate};

/// The client's end of a backlog.
pub(crate) struct Backlog {
    queue: mpsc::UnboundedReceiver<Relayed>,
    shared: Arc<Shared>,
    max_rows: usize,
}

/// What the relay queues.
enum Relayed {
    Message(Message),
    /// The job's output ended, for this reason.
    End(JobStatus),
}

struct Shared {
    /// Rows queued and not yet read by the client.
    rows: AtomicUsize,
    /// The client fell more than the bound behind: the relay stopped.
    overflowed: AtomicBool,
}

impl Backlog {
    /// Starts relaying `output` (a job's) into a queue of at most
    /// `max_rows` rows. `job` owns the job and resolves to how it stopped;
    /// it is dropped, and the job with it, when the relay stops.
    pub(crate) fn spawn(
        mut output: mpsc::Receiver<Message>,
        max_rows: usize,
        job: BoxFuture<'static, JobStatus>,
    ) -> Backlog {
        let (queue_in, queue) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            rows: AtomicUsize::new(0),
            overflowed: AtomicBool::new(false),
        });
        let relay = shared.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    message = output.recv() => message,
                    // The client went: stop at once, not at the next message.
                    () = queue_in.closed() => return,
                };
                let Some(message) = message else {
                    // Nothing follows the end: the job finished (its
                    // sources ended) or failed, and says which.
                    let status = job.await;
                    let _ = queue_in.send(Relayed::End(status));
                    return;
                };
                if let Message::Chunk(chunk) = &message {
                    let queued =
                        relay.rows.fetch_add(chunk.num_rows(), Ordering::AcqRel) + chunk.num_rows();
                    if queued > max_rows {
                        relay.overflowed.store(true, Ordering::Release);
                        // Returning drops the job.
                        return;
                    }
                }
                if queue_in.send(Relayed::Message(message)).is_err() {
                    return;
                }
            }
        });
        Backlog {
            queue,
            shared,
            max_rows,
        }
    }

    /// The next message of the job's output; `Ok(None)` when the job
    /// finished; an error when it failed or the client fell too far behind
    /// (then nothing more comes).
    pub(crate) async fn recv(&mut self) -> Result<Option<Message>, WeirError> {
        let relayed = if self.shared.overflowed.load(Ordering::Acquire) {
            None
        } else {
            self.queue.recv().await
        };
        match relayed {
            Some(Relayed::Message(message)) => {
                if let Message::Chunk(chunk) = &message {
                    self.shared
                        .rows
                        .fetch_sub(chunk.num_rows(), Ordering::AcqRel);
                }
                Ok(Some(message))
            }
            Some(Relayed::End(JobStatus::Failed(error))) => Err(WeirError::from(
                datafusion::error::DataFusionError::Execution(error),
            )),
            Some(Relayed::End(_)) => Ok(None),
            None if self.shared.overflowed.load(Ordering::Acquire) => {
                self.queue.close();
                Err(WeirError::new(
                    sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
                    format!(
                        "the client fell more than {} rows behind its continuous query, \
                         which was stopped",
                        self.max_rows
                    ),
                )
                .with_hint(
                    "Read the rows as they come (a cursor's FETCH, a driver that polls), \
                     or raise max_client_lag_rows.",
                ))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use weir_runtime::{Barrier, Chunk};

    use super::*;

    fn chunk(rows: i64) -> Message {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(Int64Array::from_iter_values(0..rows))],
        )
        .expect("batch");
        Message::Chunk(Chunk::inserts(batch))
    }

    #[tokio::test]
    async fn a_client_that_keeps_up_gets_everything_then_the_end() {
        let (job, output) = mpsc::channel(2);
        let mut backlog = Backlog::spawn(output, 10, Box::pin(async { JobStatus::Finished }));
        // Many more rows than the bound, read as they come: rows read are
        // no longer counted.
        for _ in 0..50 {
            job.send(chunk(5)).await.expect("the relay reads");
            job.send(Message::Barrier(Barrier::new(1)))
                .await
                .expect("the relay reads");
            match backlog.recv().await.expect("no overflow") {
                Some(Message::Chunk(c)) => assert_eq!(c.num_rows(), 5),
                other => panic!("expected a chunk, got {other:?}"),
            }
            assert!(matches!(
                backlog.recv().await.expect("no overflow"),
                Some(Message::Barrier(_))
            ));
        }
        drop(job);
        assert!(backlog.recv().await.expect("no overflow").is_none());
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_an_error_and_the_job_is_cut_off() {
        let (job, output) = mpsc::channel(2);
        let (alive, dropped) = tokio::sync::oneshot::channel::<()>();
        let running = async move {
            let _alive = alive;
            std::future::pending().await
        };
        let mut backlog = Backlog::spawn(output, 10, Box::pin(running));
        // The job never waits for the client: its sends go through while
        // the client reads nothing, until the bound is passed.
        for _ in 0..3 {
            job.send(chunk(4)).await.expect("the relay reads");
        }
        // The relay has stopped: the job's output is closed.
        tokio::time::timeout(std::time::Duration::from_secs(5), job.closed())
            .await
            .expect("the job's output closes");
        assert!(dropped.await.is_err(), "the relay dropped the job");
        let error = backlog.recv().await.expect_err("overflow");
        assert_eq!(error.code, sqlstate::CONFIGURATION_LIMIT_EXCEEDED);
        assert!(
            error.message.contains("more than 10 rows behind"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn a_failed_job_is_an_error_after_its_rows() {
        let (job, output) = mpsc::channel(2);
        let failed = async { JobStatus::Failed("division by zero".into()) };
        let mut backlog = Backlog::spawn(output, 10, Box::pin(failed));
        job.send(chunk(3)).await.expect("the relay reads");
        drop(job);
        assert!(matches!(backlog.recv().await, Ok(Some(Message::Chunk(_)))));
        let error = backlog.recv().await.expect_err("the job failed");
        assert!(
            error.message.contains("division by zero"),
            "{}",
            error.message
        );
    }
}
