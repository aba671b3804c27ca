//! Live progress of waits on the terminal (approval, snapshot completion,
//! rate-limit tokens, AWS throttling): the events with target
//! [`cordon_core::progress::TARGET`], rendered as one spinner per waiting
//! thing when stderr is a terminal, as plain `progress:` lines (at most one
//! per thing every [`LINE_EVERY`]) when it is not, and not at all for a
//! command asked for JSON.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cordon_core::text::escape;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// How often a plain progress line for one waiting thing is repeated.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// Renders progress events; see the module docs.
pub struct ProgressLayer {
    state: Mutex<State>,
}

enum State {
    Bars {
        multi: MultiProgress,
        bars: HashMap<String, ProgressBar>,
    },
    Lines {
        last: HashMap<String, Instant>,
    },
}

impl ProgressLayer {
    /// Spinners on a terminal, plain lines otherwise.
    pub fn for_stderr() -> Self {
        let state = if std::io::stderr().is_terminal() {
            State::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: HashMap::new(),
            }
        } else {
            State::Lines {
                last: HashMap::new(),
            }
        };
        Self {
            state: Mutex::new(state),
        }
    }

    fn show(&self, key: String, message: String, done: bool) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &mut *state {
            State::Bars { multi, bars } => {
                let bar = bars.entry(key.clone()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    {
                        bar.set_style(style);
                    }
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bar
                });
                bar.set_message(message);
                if done {
                    bar.finish();
                    bars.remove(&key);
                }
            }
            State::Lines { last } => {
                let now = Instant::now();
                let due = last
                    .get(&key)
                    .is_none_or(|at| now.duration_since(*at) >= LINE_EVERY);
                if done || due {
                    eprintln!("progress: {message}");
                    last.insert(key.clone(), now);
                }
                if done {
                    last.remove(&key);
                }
            }
        }
    }
}

/// The fields of one progress event.
#[derive(Default)]
struct Fields {
    key: Option<String>,
    message: Option<String>,
    done: bool,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "done" {
            self.done = value;
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_text(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_text(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record_text(&mut self, field: &Field, text: String) {
        match field.name() {
            "key" => self.key = Some(text),
            "message" => self.message = Some(text),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for ProgressLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != cordon_core::progress::TARGET {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let Some(message) = fields.message else {
            return;
        };
        // Keys and messages may quote step ids and AWS answers.
        let key = fields.key.unwrap_or_else(|| message.clone());
        self.show(
            escape(&key).into_owned(),
            escape(&message).into_owned(),
            fields.done,
        );
    }
}

/// Whether the command line asks for JSON output (`--output json`,
/// `--output=json`, `--format json`), when progress stays off stderr too.
pub fn json_requested(args: &[String]) -> bool {
    args.iter().enumerate().any(|(i, arg)| {
        matches!(arg.as_str(), "--output=json" | "--format=json")
            || (matches!(arg.as_str(), "--output" | "--format")
                && args.get(i + 1).is_some_and(|v| v == "json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mode_is_recognised_in_every_spelling() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(json_requested(&args(&[
            "cordon", "run", "f.json", "--output", "json"
        ])));
        assert!(json_requested(&args(&[
            "cordon",
            "status",
            "c",
            "--output=json"
        ])));
        assert!(json_requested(&args(&[
            "cordon", "report", "c", "--format", "json"
        ])));
        assert!(!json_requested(&args(&[
            "cordon", "run", "json", "--output", "text"
        ])));
        assert!(!json_requested(&args(&["cordon", "run", "f.json"])));
    }
}
