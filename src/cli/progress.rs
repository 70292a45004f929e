//! Progress for people: a bar on a terminal; elsewhere (a log file, a CI job, a
//! pipe) a plain line at an interval, so a long run is never silent and never writes
//! terminal control codes into a log.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Seconds between progress lines when stderr is not a terminal (`TRIAGE_PROGRESS_SECONDS`, 0: none).
fn interval() -> Option<Duration> {
    let secs = std::env::var("TRIAGE_PROGRESS_SECONDS").ok().and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(10.0);
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// A progress bar named `what`: drawn on a terminal, else hidden with a line such as
/// `indexing: 1200/3000 (40%), 44/s, 27 s` printed to stderr every interval while it moves.
pub fn progress_bar(what: &str) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template(&format!("{what} [{{bar:30}}] {{pos}}/{{len}} ({{per_sec}}, eta {{eta}}) {{msg}}"))
        {
            bar.set_style(style.progress_chars("=> "));
        }
        return bar;
    }
    let bar = ProgressBar::hidden();
    if let Some(every) = interval() {
        let weak = bar.downgrade();
        let what = what.to_string();
        let started = Instant::now();
        std::thread::spawn(move || {
            let mut last = None;
            loop {
                std::thread::sleep(every);
                let Some(bar) = weak.upgrade() else { return };
                if bar.is_finished() {
                    return;
                }
                let (pos, len, msg) = (bar.position(), bar.length().unwrap_or(0), bar.message());
                // A step's own count (`embedding 320/1087`) moves while the position waits.
                let now = (pos, msg.clone());
                if last.as_ref() == Some(&now) {
                    continue;
                }
                last = Some(now);
                eprintln!("{}", line(&what, pos, len, &msg, started.elapsed()));
            }
        });
    }
    bar
}

fn line(what: &str, pos: u64, len: u64, msg: &str, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { pos as f64 / secs } else { 0.0 };
    let mut s = if len > 0 {
        format!("{what}: {pos}/{len} ({:.0}%), {rate:.0}/s, {secs:.0} s", 100.0 * pos as f64 / len as f64)
    } else {
        format!("{what}: {pos}, {rate:.0}/s, {secs:.0} s")
    };
    if !msg.is_empty() {
        s.push_str(&format!(" ({msg})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_plain_text() {
        let l = line("indexing", 1200, 3000, "", Duration::from_secs(27));
        assert_eq!(l, "indexing: 1200/3000 (40%), 44/s, 27 s");
        assert!(!l.contains('\u{1b}'));
        assert_eq!(line("calibrating", 5, 0, "votes", Duration::from_secs(1)), "calibrating: 5, 5/s, 1 s (votes)");
    }
}
