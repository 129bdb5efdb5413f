//! Shares handed out and given back: a count that says when every holder is done.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// The shares of one group: each [`Share`] counts until dropped (also when its holder fails,
/// so nobody waits for a share that will not come back).
pub(super) struct Shares(Arc<watch::Sender<usize>>);

/// One share of a group, given back when dropped.
pub(super) struct Share(Arc<watch::Sender<usize>>);

impl Shares {
    pub(super) fn new() -> Shares {
        Shares(Arc::new(watch::Sender::new(0)))
    }

    /// A new share of this group.
    pub(super) fn share(&self) -> Share {
        self.0.send_modify(|out| *out += 1);
        Share(self.0.clone())
    }

    /// Watches the group: see [`all_back`].
    pub(super) fn watch(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

impl Share {
    /// Gives this share back, then waits until every share of its group is back, or for
    /// `limit` at most.
    pub(super) async fn give_back_and_wait(self, limit: Duration) {
        let mut group = self.0.subscribe();
        drop(self);
        all_back(&mut group, limit).await;
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.0.send_modify(|out| *out -= 1);
    }
}

/// Waits until every share of the watched group is back, or for `limit` at most.
pub(super) async fn all_back(group: &mut watch::Receiver<usize>, limit: Duration) {
    let _ = tokio::time::timeout(limit, group.wait_for(|out| *out == 0)).await;
}
