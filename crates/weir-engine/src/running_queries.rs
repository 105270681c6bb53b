//! The continuous queries and subscriptions running in a database: each
//! has a streaming job owned by its client's row stream, registered here so
//! that `weir_catalog.jobs` lists it. The registration goes when the row
//! stream does (the query ended, was cancelled, or its client went away),
//! and with it the job, its operators and their state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use weir_runtime::Job;

/// A running query, as the jobs table shows it.
#[derive(Debug, Clone)]
pub struct RunningQuery {
    /// `query <n>`, numbered from 1 per server.
    pub name: String,
    /// `continuous query` or `subscribe`.
    pub kind: &'static str,
    /// The session's user.
    pub user: String,
    pub job: Weak<Job>,
}

/// The running queries of a database.
#[derive(Debug, Default)]
pub struct RunningQueries {
    entries: Mutex<BTreeMap<u64, RunningQuery>>,
}

/// Numbers queries across databases.
static NEXT_QUERY: AtomicU64 = AtomicU64::new(1);

impl RunningQueries {
    /// Registers a query's job until the returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        kind: &'static str,
        user: &str,
        job: &Arc<Job>,
    ) -> Registration {
        let id = NEXT_QUERY.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(
            id,
            RunningQuery {
                name: format!("query {id}"),
                kind,
                user: user.to_string(),
                job: Arc::downgrade(job),
            },
        );
        Registration {
            queries: self.clone(),
            id,
        }
    }

    /// The queries running now, oldest first.
    pub fn list(&self) -> Vec<RunningQuery> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, RunningQuery>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A query's place in [`RunningQueries`], given up when dropped.
#[derive(Debug)]
pub struct Registration {
    queries: Arc<RunningQueries>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.queries.lock().remove(&self.id);
    }
}
