//! Progress bars for the command line: index builds (and jobs) report stages, drawn with
//! `indicatif` on stderr.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use quiver_planner::progress::ProgressListener;

/// Draws one bar per stage of a long statement.
#[derive(Debug, Default)]
pub struct ProgressBars {
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressListener for ProgressBars {
    fn stage_start(&self, stage: &str, total: Option<u64>, unit: &str) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg:>20} [{bar:40}] {pos}/{len} {prefix}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(stage.to_string());
        bar.set_prefix(unit.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn stage_progress(&self, _stage: &str, completed: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.set_position(completed);
            }
        }
    }

    fn stage_complete(&self, _stage: &str) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}
