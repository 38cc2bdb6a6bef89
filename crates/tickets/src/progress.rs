//! How `ticket-projector rebuild` shows its progress: a bar on a terminal, a
//! log line every two seconds otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use projector::{LogProgress, Progress, RebuildOutcome};
use readmodel::Projection;

/// The progress a rebuild on this process's stderr should show.
pub fn rebuild_progress() -> Box<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Box::new(BarProgress::default())
    } else {
        Box::new(LogProgress::new(Duration::from_secs(2)))
    }
}

/// One indicatif bar per projection: events done/total, events/s, ETA.
#[derive(Debug, Default)]
pub struct BarProgress {
    bars: Mutex<HashMap<Projection, ProgressBar>>,
}

impl BarProgress {
    fn with_bar(&self, projection: Projection, f: impl FnOnce(&ProgressBar)) {
        if let Ok(bars) = self.bars.lock()
            && let Some(bar) = bars.get(&projection)
        {
            f(bar);
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>9} [{bar:32}] {pos}/{len} events  {rate}  ETA {eta}  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} events/s", state.per_sec());
        },
    )
    .progress_chars("=> ")
}

impl Progress for BarProgress {
    fn started(&self, projection: Projection, done: u64, total: u64, resumed: bool) {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style())
            .with_prefix(projection.name())
            .with_position(done);
        bar.reset_eta();
        if resumed {
            bar.set_message(format!("resumed at {done}"));
        }
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(projection, bar);
        }
    }

    fn advanced(&self, projection: Projection, done: u64, total: u64) {
        self.with_bar(projection, |bar| {
            bar.set_length(total);
            bar.set_position(done);
        });
    }

    fn phase(&self, projection: Projection, phase: &str) {
        self.with_bar(projection, |bar| bar.set_message(phase.to_owned()));
    }

    fn finished(&self, outcome: &RebuildOutcome) {
        self.with_bar(outcome.projection, |bar| {
            bar.finish_with_message(format!("swapped in at {}", outcome.swapped_at));
        });
    }
}
