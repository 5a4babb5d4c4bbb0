//! The `ferrymq` binary: command line -> [`Config`] -> logging -> tokio runtime -> [`server::start`], then run
//! until SIGINT or SIGTERM and drain gracefully (exit status 0).
//!
//! Everything the broker does lives in the library; this file owns only process concerns: argument and
//! configuration errors (printed to stderr, exit status 2), the tracing subscriber (`RUST_LOG`, default
//! `info`; text or JSON lines on stderr, every field escaped so that no client-supplied string can start a
//! line of its own), the open-file limit (raised to the hard limit), the runtime, and signals. A second signal during the drain exits at
//! once. `anyhow` is used here and nowhere else.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use ferrymq::config::{Cli, Config, LogFormat};
use ferrymq::server;
use ferrymq::transport::fd;

/// mimalloc instead of the system allocator: it gives freed pages back to the system (glibc's malloc keeps the
/// holes a recovered backlog leaves in its heap: hundreds of MB after recovering 10M messages), and it is
/// faster for the broker's many small, cross-thread allocations.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for a configuration the broker refuses (as clap uses for bad arguments).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit status when a second signal cuts the drain short (128 + SIGINT, as shells report it).
const EXIT_FORCED: i32 = 130;
/// How long the runtime waits for stray blocking work after the server has shut down.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("ferrymq: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    init_tracing(config.log.format);
    raise_open_file_limit();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = format!("{e:#}"), "ferrymq failed");
            ExitCode::FAILURE
        }
    }
}

/// Log to stderr, filtered by `RUST_LOG` (default `info`), in the configured format.
fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|e| {
        if std::env::var_os(EnvFilter::DEFAULT_ENV).is_some() {
            eprintln!("ferrymq: ignoring invalid RUST_LOG ({e}); logging at info");
        }
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .fmt_fields(text::EscapedFields)
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => builder.event_format(json::JsonLines).init(),
    }
}

/// Raise the soft open-file limit to the hard one before anything opens files or sockets; the server then
/// fits its connection limits under it (see `transport::fd`).
fn raise_open_file_limit() {
    match fd::raise_soft_limit() {
        Ok(raised) => info!(
            before = raised.before,
            soft = raised.soft,
            hard = raised.hard,
            "open-file limit"
        ),
        Err(e) => warn!(error = %e, "cannot raise the open-file limit; keeping it"),
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrymq")
        .build()
        .context("cannot start the tokio runtime")?;
    let result = runtime.block_on(async {
        let mut signals = Signals::new().context("cannot install signal handlers")?;
        let server = server::start(config)
            .await
            .context("cannot start FerryMQ")?;
        let signal = signals.next().await;
        info!(
            signal,
            "shutdown requested; draining (send the signal again to exit at once)"
        );
        tokio::spawn(async move {
            let signal = signals.next().await;
            warn!(signal, "second signal: exiting without finishing the drain");
            std::process::exit(EXIT_FORCED);
        });
        server.shutdown().await;
        anyhow::Ok(())
    });
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    result
}

/// SIGINT and SIGTERM (Ctrl-C only, off Unix).
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// Wait for the next shutdown signal; returns its name.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "ctrl-c",
            Err(_) => std::future::pending().await,
        }
    }
}

/// `[log] format = "text"`: tracing's usual `message key=value` fields, with every value escaped. This is
/// the one place client-supplied text is made safe for the text log: a PLAIN user name containing a
/// newline once wrote a forged "AMQP connection opened ... user=admin" line. Control characters (newline,
/// carriage return, escape, ...) and bidirectional-text overrides become `\u{..}`, so each event is one
/// line that says what it came from, whatever a client sent. (JSON lines need nothing: JSON escapes.)
mod text {
    use std::fmt;

    use tracing::field::{Field, Visit};
    use tracing_subscriber::field::RecordFields;
    use tracing_subscriber::fmt::FormatFields;
    use tracing_subscriber::fmt::format::Writer;

    /// Formats an event's or span's fields like tracing's default, escaped.
    pub struct EscapedFields;

    impl<'writer> FormatFields<'writer> for EscapedFields {
        fn format_fields<R: RecordFields>(
            &self,
            mut writer: Writer<'writer>,
            fields: R,
        ) -> fmt::Result {
            let mut visitor = Escaping {
                writer: &mut writer,
                first: true,
                result: Ok(()),
            };
            fields.record(&mut visitor);
            visitor.result
        }
    }

    struct Escaping<'a, 'writer> {
        writer: &'a mut Writer<'writer>,
        first: bool,
        result: fmt::Result,
    }

    impl Escaping<'_, '_> {
        fn write(&mut self, field: &Field, value: &str) {
            if self.result.is_err() {
                return;
            }
            let separator = if self.first { "" } else { " " };
            self.first = false;
            self.result = if field.name() == "message" {
                write!(self.writer, "{separator}")
            } else {
                write!(self.writer, "{separator}{}=", field.name())
            }
            .and_then(|()| escape(value, &mut *self.writer));
        }
    }

    impl Visit for Escaping<'_, '_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            // Like tracing's default: string fields quoted, the message as it is.
            if field.name() == "message" {
                self.write(field, value);
            } else {
                self.write(field, &format!("{value:?}"));
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.write(field, &format!("{value:?}"));
        }
    }

    /// Copy `text`, writing control characters and bidirectional-text controls as `\u{hex}`.
    pub fn escape(text: &str, out: &mut impl fmt::Write) -> fmt::Result {
        for c in text.chars() {
            if c.is_control() || is_bidi_control(c) {
                write!(out, "\\u{{{:x}}}", c as u32)?;
            } else {
                out.write_char(c)?;
            }
        }
        Ok(())
    }

    /// Characters that reorder how the rest of a line is displayed (Unicode bidi embeddings, overrides and
    /// isolates, and the directional marks).
    fn is_bidi_control(c: char) -> bool {
        matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }

    #[cfg(test)]
    mod tests {
        use super::escape;

        fn escaped(text: &str) -> String {
            let mut out = String::new();
            escape(text, &mut out).expect("writing to a String");
            out
        }

        #[test]
        fn control_and_bidi_characters_are_escaped_and_the_rest_kept() {
            assert_eq!(escaped("a\nb\r\u{1b}[31m"), "a\\u{a}b\\u{d}\\u{1b}[31m");
            assert_eq!(escaped("\u{202e}evil"), "\\u{202e}evil");
            assert_eq!(escaped("gäst \"x\" = 1"), "gäst \"x\" = 1");
        }
    }
}

/// `[log] format = "json"`: one JSON object per event, without pulling in tracing-subscriber's `json` feature.
mod json {
    use std::fmt;

    use serde_json::{Map, Value};
    use tracing::field::{Field, Visit};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
    use tracing_subscriber::registry::LookupSpan;

    /// Writes `{"timestamp":..,"level":..,"target":..,"message":..,<fields>..,"spans":[..]}` per line.
    pub struct JsonLines;

    impl<S, N> FormatEvent<S, N> for JsonLines
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            ctx: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let mut timestamp = String::new();
            SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
            let meta = event.metadata();
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            let mut line: Vec<(String, Value)> = vec![
                ("timestamp".into(), Value::String(timestamp)),
                ("level".into(), Value::String(meta.level().to_string())),
                ("target".into(), Value::String(meta.target().to_owned())),
            ];
            // The message first, then the fields in the order they were written.
            fields.0.sort_by_key(|(name, _)| name != "message");
            line.extend(fields.0);
            if let Some(scope) = ctx.event_scope() {
                let spans: Vec<Value> = scope
                    .from_root()
                    .map(|span| {
                        let mut entry = Map::new();
                        entry.insert("name".into(), Value::String(span.name().to_owned()));
                        if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                            && !fields.is_empty()
                        {
                            entry.insert("fields".into(), Value::String(fields.fields.clone()));
                        }
                        Value::Object(entry)
                    })
                    .collect();
                line.push(("spans".into(), Value::Array(spans)));
            }
            let mut text = String::from("{");
            for (i, (name, value)) in line.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&Value::String(name.clone()).to_string());
                text.push(':');
                text.push_str(&value.to_string());
            }
            text.push('}');
            writeln!(writer, "{text}")
        }
    }

    /// Records an event's fields as JSON values in order, keeping numbers and booleans typed.
    struct Fields(Vec<(String, Value)>);

    impl Fields {
        fn insert(&mut self, field: &Field, value: Value) {
            self.0.push((field.name().to_owned(), value));
        }
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            self.insert(field, Value::String(value.to_owned()));
        }
        fn record_bool(&mut self, field: &Field, value: bool) {
            self.insert(field, Value::Bool(value));
        }
        fn record_i64(&mut self, field: &Field, value: i64) {
            self.insert(field, Value::from(value));
        }
        fn record_u64(&mut self, field: &Field, value: u64) {
            self.insert(field, Value::from(value));
        }
        fn record_f64(&mut self, field: &Field, value: f64) {
            self.insert(field, Value::from(value));
        }
        fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
            self.insert(field, Value::String(value.to_string()));
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.insert(field, Value::String(format!("{value:?}")));
        }
    }
}
