//! The cache of rendered job pages, bounded by bytes: what a client can make the daemon hold
//! does not grow with what it asks for.

use std::sync::Mutex;

use hashlink::LruCache;
use jiff::Timestamp;

/// The bytes the job-page cache holds at most by default.
pub const PAGE_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Rendered pages of `GET /api/v1/jobs`, each reused while nothing it shows can have changed:
/// the same store change number and timetable version (no job created, changed, paused or
/// deleted, here or by another process) and no job on the page past the next fire it shows.
/// A dashboard polling the same page then costs one one-row read per request.
///
/// It holds at most its budget of bytes (the pages' bodies and keys): past that, the pages
/// used least recently go first, and a page larger than the whole budget is not kept at all.
pub struct PageCache {
    budget: usize,
    pages: Mutex<Pages>,
}

struct Pages {
    by_key: LruCache<String, CachedPage>,
    bytes: usize,
}

struct CachedPage {
    seq: i64,
    timetable: u64,
    until: Option<Timestamp>,
    body: axum::body::Bytes,
}

/// What a page costs beyond its key and body: the entry and its place in the map.
const PAGE_OVERHEAD: usize = std::mem::size_of::<CachedPage>() + std::mem::size_of::<String>() + 64;

fn weight(key: &str, body: &[u8]) -> usize {
    key.len() + body.len() + PAGE_OVERHEAD
}

impl Default for PageCache {
    fn default() -> Self {
        PageCache::with_budget(PAGE_CACHE_BYTES)
    }
}

impl PageCache {
    /// A cache that holds at most `budget` bytes.
    pub fn with_budget(budget: usize) -> PageCache {
        PageCache {
            budget,
            pages: Mutex::new(Pages {
                by_key: LruCache::new_unbounded(),
                bytes: 0,
            }),
        }
    }

    /// The bytes held now (never more than the budget).
    pub fn bytes(&self) -> usize {
        self.pages.lock().unwrap().bytes
    }

    /// The pages held now.
    pub fn len(&self) -> usize {
        self.pages.lock().unwrap().by_key.len()
    }

    /// Whether it holds no page.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The page stored under `key`, if it still holds; a page that no longer holds is dropped.
    pub fn get(
        &self,
        key: &str,
        seq: i64,
        timetable: u64,
        now: Timestamp,
    ) -> Option<axum::body::Bytes> {
        let mut pages = self.pages.lock().unwrap();
        let page = pages.by_key.get(key)?;
        let fresh = page.seq == seq
            && page.timetable == timetable
            && page.until.is_none_or(|until| now < until);
        if fresh {
            return Some(page.body.clone());
        }
        pages.remove(key);
        None
    }

    /// Keeps `body` under `key`, making room by dropping the pages used least recently.
    pub fn put(
        &self,
        key: String,
        seq: i64,
        timetable: u64,
        until: Option<Timestamp>,
        body: axum::body::Bytes,
    ) {
        let mut pages = self.pages.lock().unwrap();
        pages.remove(&key);
        let weight = weight(&key, &body);
        if weight > self.budget {
            return;
        }
        while pages.bytes + weight > self.budget {
            let Some((key, page)) = pages.by_key.remove_lru() else {
                break;
            };
            pages.bytes -= self::weight(&key, &page.body);
        }
        pages.bytes += weight;
        pages.by_key.insert(
            key,
            CachedPage {
                seq,
                timetable,
                until,
                body,
            },
        );
    }
}

impl Pages {
    fn remove(&mut self, key: &str) {
        if let Some(page) = self.by_key.remove(key) {
            self.bytes -= weight(key, &page.body);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(bytes: usize) -> axum::body::Bytes {
        axum::body::Bytes::from(vec![b'x'; bytes])
    }

    #[test]
    fn many_large_pages_stay_within_the_budget() {
        let budget = 1024 * 1024;
        let cache = PageCache::with_budget(budget);
        for i in 0..1_000 {
            cache.put(format!("page-{i}"), 1, 1, None, page(10 * 1024));
            assert!(cache.bytes() <= budget, "{} after {i}", cache.bytes());
        }
        // Full, not emptied: about budget / page size are kept, the newest.
        assert!((90..=100).contains(&cache.len()), "{}", cache.len());
        assert!(cache.get("page-999", 1, 1, Timestamp::now()).is_some());
        assert!(cache.get("page-0", 1, 1, Timestamp::now()).is_none());
    }

    #[test]
    fn the_least_recently_used_page_goes_first() {
        let cache = PageCache::with_budget(3 * weight("page-0", &page(1000)));
        for i in 0..3 {
            cache.put(format!("page-{i}"), 1, 1, None, page(1000));
        }
        assert!(cache.get("page-0", 1, 1, Timestamp::now()).is_some());
        cache.put("page-3".into(), 1, 1, None, page(1000));
        let kept: Vec<bool> = (0..4)
            .map(|i| {
                cache
                    .get(&format!("page-{i}"), 1, 1, Timestamp::now())
                    .is_some()
            })
            .collect();
        assert_eq!(kept, [true, false, true, true]);
    }

    #[test]
    fn a_page_larger_than_the_budget_is_not_kept_and_a_replaced_one_is_counted_once() {
        let cache = PageCache::with_budget(64 * 1024);
        cache.put("small".into(), 1, 1, None, page(1000));
        let small = cache.bytes();
        cache.put("huge".into(), 1, 1, None, page(100 * 1024));
        assert!(cache.get("huge", 1, 1, Timestamp::now()).is_none());
        assert_eq!(cache.bytes(), small, "the small page stays");
        // The same key again: replaced, not added.
        cache.put("small".into(), 2, 1, None, page(1000));
        assert_eq!(cache.bytes(), small);
        assert_eq!(cache.len(), 1);
        // A page that no longer holds is dropped when found stale.
        assert!(cache.get("small", 3, 1, Timestamp::now()).is_none());
        assert_eq!((cache.bytes(), cache.len()), (0, 0));
        // Replaced by one too large: the old copy goes too.
        cache.put("small".into(), 1, 1, None, page(1000));
        cache.put("small".into(), 1, 1, None, page(100 * 1024));
        assert_eq!((cache.bytes(), cache.len()), (0, 0));
    }
}
