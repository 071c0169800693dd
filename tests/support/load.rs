//! Load: requests sent in a loop on another thread while a test reloads or restarts Envoy.

use std::time::Instant;

use super::client::curl;

/// Requests for alice's support inquiries (an answer no reload or restart changes) sent in a
/// loop on another thread; every answer is kept with its time (the body when not 200).
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u16, String)>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    /// Starts sending to `url`.
    pub fn start(url: String) -> Load {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (Arc::clone(&stop), Arc::clone(&seen));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let r = curl(&[
                    "-H",
                    "x-user-id: u-alice",
                    "-H",
                    "x-data-purpose: support.inquiries",
                    &url,
                ]);
                let body = if r.status == 200 {
                    String::new()
                } else {
                    String::from_utf8_lossy(&r.body).into_owned()
                };
                v.lock()
                    .expect("load")
                    .push((Instant::now(), r.status, body));
            }
        });
        Load {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    /// How many answers arrived so far.
    pub fn answered(&self) -> usize {
        self.seen.lock().map_or(0, |seen| seen.len())
    }

    /// Stops the loop; every answer with its time.
    pub fn finish(mut self) -> Vec<(Instant, u16, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        std::mem::take(&mut *self.seen.lock().expect("load"))
    }
}
