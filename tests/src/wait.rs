//! Waiting for the background scheduler: poll a condition until it holds or a generous
//! deadline passes. Deadlines only bound a failing test; passing tests never depend on them.

use std::time::{Duration, Instant};

/// Poll `check` every 50 ms until it returns true; panic naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
