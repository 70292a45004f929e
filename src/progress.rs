//! Progress of long library steps (indexing, calibration) as a callback, so the
//! library knows nothing of how it is shown: the CLI draws a bar or prints plain
//! lines (`cli::progress`), the HTTP API passes [`silent`].

use indicatif::ProgressBar;

/// Progress of a long step: its name (empty: the whole task), done, total.
pub type Progress<'a> = &'a (dyn Fn(&str, usize, usize) + Sync);

/// A progress callback that shows nothing (the HTTP API, background refits).
pub fn silent(_step: &str, _done: usize, _total: usize) {}

/// A callback that moves `bar`: the step as its message, done of total.
pub fn on_bar(bar: &ProgressBar) -> impl Fn(&str, usize, usize) + Sync + '_ {
    move |step: &str, done: usize, total: usize| {
        bar.set_message(step.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_follows_the_callback() {
        let bar = ProgressBar::hidden();
        let progress = on_bar(&bar);
        progress("votes", 3, 10);
        assert_eq!((bar.position(), bar.length(), bar.message().to_string()), (3, Some(10), "votes".to_string()));
        silent("x", 1, 2);
    }
}
