//! The console: terminal set-up and restore on every exit path, the event loop, and redraw pacing.

pub mod app;
pub mod board;
pub mod db;
pub mod keymap;
pub mod table;
pub mod standup;
pub mod theme;
pub mod ui;

use crate::config::Config;
use crate::paths::Paths;
use crate::store::Store;
use app::App;
use crossterm::event::{self, Event, KeyEventKind};
use crossterm::terminal::{self, BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Build the console state for a store (also used by tests with a `TestBackend`).
pub fn build_app(store: Store, paths: &Paths, cfg: &Config, warnings: &mut Vec<String>) -> App {
    let theme_dir = paths.config_dir.join("themes");
    let src = theme::ThemeSource { user_dir: Some(&theme_dir) };
    let name = if theme::no_color() { "monochrome".to_string() } else { cfg.theme.clone() };
    let theme = src.load(&name, warnings);
    let keymap = keymap::Keymap::with_overrides(&cfg.keys, warnings);
    let label = store.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let db = db::Db::start(store);
    let mut app = App::new(db, label, theme, Some(theme_dir), keymap);
    app.sql.export_dir = paths.data_dir.join("exports");
    app.load_history(paths.data_dir.join("sql_history.jsonl"));
    app
}

fn restore() {
    let mut out = std::io::stdout();
    let _ = execute!(out, EndSynchronizedUpdate, LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

fn enter() -> std::io::Result<()> {
    terminal::enable_raw_mode()?;
    // No mouse capture: the terminal's own selection and paste keep working.
    execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)
}

/// Copy text to the clipboard of the terminal the user sits at (works over SSH).
fn osc52(text: &str) {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let mut out = std::io::stdout();
    let _ = write!(out, "\x1b]52;c;{b}\x07");
    let _ = out.flush();
}

pub fn run(db_path: &Path, read_only: bool, paths: &Paths) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        anyhow::bail!("the console needs a terminal; for scripts use `ctem query`, `ctem import` or `ctem info`");
    }
    let mut warnings = Vec::new();
    let cfg = Config::load(&paths.config_file(), &mut warnings);
    let mut store = Store::open(db_path, read_only)?;
    store.weights = cfg.weights.clone();
    crate::cli::apply_config(&mut store, &cfg);
    let mut app = build_app(store, paths, &cfg, &mut warnings);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    if let Some(w) = warnings.first() {
        app.message = Some((format!("{w}{}", if warnings.len() > 1 { format!(" (+{} more in the log)", warnings.len() - 1) } else { String::new() }), true));
    }
    app.start(cfg.start_tab.as_deref(), cfg.scope.as_deref());

    // Signals: SIGTERM, SIGHUP (the SSH session dropped) and SIGINT end the loop cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // Panics restore the terminal first, then report (hook installed last so it runs first).
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        prev(info);
    }));

    enter()?;
    let backend = CrosstermBackend::new(std::io::stdout());
    let mut term = Terminal::new(backend)?;
    term.clear()?;
    let result = event_loop(&mut term, &mut app, &stop);
    restore();
    let _ = std::panic::take_hook();
    if app.jobs.is_empty() {
        tracing::info!("console closed");
    } else {
        tracing::info!("console closed with a job running; its transaction rolls back");
    }
    result
}

/// Terminal events, read on their own thread: when the terminal dies, crossterm's poll can spin
/// without returning, and the console must still see SIGHUP and leave.
fn spawn_input(paused: Arc<AtomicBool>) -> std::sync::mpsc::Receiver<std::io::Result<Event>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || loop {
            if paused.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            match event::poll(Duration::from_millis(50)) {
                Ok(true) => {
                    let ev = event::read();
                    let failed = ev.is_err();
                    if tx.send(ev).is_err() || failed {
                        return;
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        })
        .expect("input thread");
    rx
}

fn event_loop(term: &mut Terminal<CrosstermBackend<std::io::Stdout>>, app: &mut App, stop: &AtomicBool) -> anyhow::Result<()> {
    // The first frame waits briefly for the first answers so it is not empty.
    app.settle(Duration::from_millis(300));
    let frame = Duration::from_millis(16);
    let mut last_draw = Instant::now() - frame;
    let paused = Arc::new(AtomicBool::new(false));
    let input = spawn_input(paused.clone());
    let mut last_check = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) || app.quit {
            return Ok(());
        }
        // A terminal that went away without a SIGHUP: its size can no longer be read.
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            if terminal::size().is_err() {
                anyhow::bail!("the terminal went away");
            }
        }
        app.pump();
        if app.dirty && last_draw.elapsed() >= frame {
            execute!(term.backend_mut(), BeginSynchronizedUpdate)?;
            term.draw(|f| ui::draw(f, app))?;
            execute!(term.backend_mut(), EndSynchronizedUpdate)?;
            app.dirty = false;
            last_draw = Instant::now();
        }
        if let Some(text) = app.copy.take() {
            osc52(&text);
        }
        if app.suspend {
            app.suspend = false;
            paused.store(true, Ordering::Relaxed);
            restore();
            let _ = signal_hook::low_level::raise(signal_hook::consts::SIGTSTP);
            // Resumed (fg): back to the console, redraw everything.
            enter()?;
            term.clear()?;
            paused.store(false, Ordering::Relaxed);
            app.dirty = true;
            continue;
        }
        // A dead terminal (EOF or EIO on the tty) ends the console, never a busy loop.
        match input.recv_timeout(Duration::from_millis(10)) {
            Ok(Ok(ev)) => match ev {
                Event::Key(k) if k.kind != KeyEventKind::Release => app.on_key(k),
                Event::Resize(..) | Event::FocusGained => app.dirty = true,
                _ => {}
            },
            Ok(Err(e)) => return Err(anyhow::anyhow!("terminal input failed: {e}")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("terminal input closed"),
        }
    }
}
