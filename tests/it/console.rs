//! The console without a terminal: keys -> actions -> state, and every pane drawn on a TestBackend.

use crate::common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ctem::store::Store;
use ctem::tui::app::{App, Input, Overlay};
use ctem::tui::db::Db;
use ctem::tui::keymap::Keymap;
use ctem::tui::theme::Theme;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// The sample estate, loaded once, with import times pinned so frames are reproducible.
fn demo_db() -> &'static Path {
    static DB: OnceLock<(tempfile::TempDir, std::path::PathBuf)> = OnceLock::new();
    let (_, p) = DB.get_or_init(|| {
        let d = tmpdir();
        let db = d.path().join("demo.duckdb");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data");
        ctem::generator::demo::load(&db, &repo).unwrap();
        let s = Store::open(&db, false).unwrap();
        s.conn
            .execute_batch(
                "UPDATE imports SET started_at = scan_time + INTERVAL 5 MINUTE, finished_at = scan_time + INTERVAL 6 MINUTE;
                 UPDATE assets SET first_seen = TIMESTAMP '2026-11-01 00:00:00' WHERE first_seen > TIMESTAMP '2026-11-24 00:00:00';",
            )
            .unwrap();
        drop(s);
        (d, db)
    });
    p
}

fn app_with(theme: &str) -> App {
    app_prepared(theme, "")
}

/// An app on its own copy of the sample estate (DuckDB allows one writer per file), after `sql`.
fn app_prepared(theme: &str, sql: &str) -> App {
    let d = tmpdir();
    let db = d.path().join("c.duckdb");
    std::fs::copy(demo_db(), &db).unwrap();
    let store = Store::open(&db, false).unwrap();
    store.conn.execute_batch(sql).unwrap();
    std::mem::forget(d);
    let mut app = App::new(Db::start(store), "demo.duckdb".into(), Theme::builtin(theme), None, Keymap::default());
    // SLA days are counted to a pinned day so frames do not change with the calendar.
    app.board.today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    app.start(None, None);
    app.settle(Duration::from_secs(10));
    app
}

fn key(app: &mut App, c: char) {
    app.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    app.settle(Duration::from_secs(10));
}

fn code(app: &mut App, k: KeyCode) {
    app.on_key(KeyEvent::new(k, KeyModifiers::NONE));
    app.settle(Duration::from_secs(10));
}

fn typed(app: &mut App, s: &str) {
    for c in s.chars() {
        key(app, c);
    }
}

fn frame(app: &mut App, w: u16, h: u16) -> (String, Terminal<TestBackend>) {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| ctem::tui::ui::draw(f, app)).unwrap();
    // Pages requested while drawing (the table learned its height) arrive; draw again.
    app.settle(Duration::from_secs(10));
    term.draw(|f| ctem::tui::ui::draw(f, app)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    (text, term)
}

#[test]
fn every_pane_at_both_sizes_in_both_themes() {
    for theme in ["default", "monochrome"] {
        let mut app = app_with(theme);
        for (w, h) in [(80u16, 24u16), (120, 40)] {
            for tab in 0..7 {
                key(&mut app, char::from(b'1' + tab as u8));
                let (text, term) = frame(&mut app, w, h);
                assert!(!text.contains("loading"), "tab {tab} at {w}x{h} still loading:\n{text}");
                // Key hints that do not fit are left out whole; help and quit are always there.
                let footer = text.lines().last().unwrap().trim_end();
                assert!(footer.ends_with("? help  q quit") || footer.ends_with("? help  q quit  c cols"), "tab {tab} at {w}x{h}: {footer}");
                insta::assert_snapshot!(format!("pane_{tab}_{w}x{h}_{theme}_text"), text);
                if theme == "default" || (w, h) == (80, 24) {
                    insta::assert_debug_snapshot!(format!("pane_{tab}_{w}x{h}_{theme}_styles"), term.backend().buffer());
                }
            }
        }
    }
}

#[test]
fn too_small_says_so() {
    let mut app = app_with("default");
    let (text, _) = frame(&mut app, 70, 20);
    assert!(text.contains("terminal too small: 70x20"), "{text}");
}

#[test]
fn keys_move_through_tabs_views_and_rows() {
    let mut app = app_with("default");
    assert_eq!(app.tab, 0);
    key(&mut app, '3');
    assert_eq!(app.tab, 2);
    assert_eq!(app.focused_table_id(), Some("findings"));
    code(&mut app, KeyCode::Tab);
    assert_eq!(app.focused_table_id(), Some("assets"));
    key(&mut app, ']');
    assert_eq!(app.tab, 3);
    key(&mut app, '[');
    key(&mut app, '[');
    assert_eq!(app.tab, 1);
    key(&mut app, '4');
    let _ = frame(&mut app, 120, 40);
    let first = app.tables["queue"].selected().unwrap().key;
    key(&mut app, 'j');
    assert_eq!(app.tables["queue"].cursor, 1);
    assert_ne!(app.tables["queue"].selected().unwrap().key, first);
    key(&mut app, 'G');
    let t = &app.tables["queue"];
    assert_eq!(Some(t.cursor as i64 + 1), t.total, "G lands on the last row");
    key(&mut app, 'g');
    assert_eq!(app.tables["queue"].cursor, 0);
    assert_eq!(app.tables["queue"].selected().unwrap().key, first);
}

#[test]
fn paging_far_keeps_a_bounded_window() {
    let mut app = app_with("default");
    key(&mut app, '3');
    let _ = frame(&mut app, 120, 40);
    for _ in 0..60 {
        code(&mut app, KeyCode::PageDown);
    }
    let t = &app.tables["findings"];
    assert!(t.cursor > 1500, "cursor {}", t.cursor);
    assert!(t.rows.len() <= ctem::tui::table::MAX_WINDOW, "window {}", t.rows.len());
    let key_at = t.selected().unwrap().key;
    // Ids sort ascending here, so the row under the cursor is the id at that position.
    assert_eq!(key_at, t.cursor as i64 + 1);
    for _ in 0..60 {
        code(&mut app, KeyCode::PageUp);
    }
    assert_eq!(app.tables["findings"].cursor, 0);
    assert_eq!(app.tables["findings"].selected().unwrap().key, 1);
}

#[test]
fn filter_as_you_type_and_errors_keep_the_rows() {
    let mut app = app_with("default");
    key(&mut app, '3');
    key(&mut app, '/');
    assert!(matches!(app.input, Input::Filter(_)));
    typed(&mut app, "sev>=critical");
    let t = &app.tables["findings"];
    let crit = count_sql("SELECT count(*) FROM findings WHERE severity = 'critical'");
    assert_eq!(t.total, Some(crit));
    assert!(t.rows.iter().all(|r| r.cells[1] == "critical"));
    // One more character that breaks it: inline error, rows unchanged.
    typed(&mut app, " (");
    assert!(app.input_error.is_some());
    assert_eq!(app.tables["findings"].total, Some(crit));
    code(&mut app, KeyCode::Esc);
    assert_eq!(app.input, Input::None);
    // The last filter that parsed stays.
    assert_eq!(app.tables["findings"].filter_text.trim(), "sev>=critical");
    // The ranked queue holds open findings only: asked for mitigated ones, it says where they are.
    key(&mut app, '4');
    key(&mut app, '/');
    typed(&mut app, "status=mitigated");
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.tables["queue"].total, Some(0));
    let (text, _) = frame(&mut app, 120, 40);
    assert!(text.contains("no rows match /status=mitigated") && text.contains("only open findings here: mitigated, fixed and excepted ones are in Discovery"), "{text}");
}

fn count_sql(sql: &str) -> i64 {
    let s = Store::open_for_query(demo_db()).unwrap();
    count(&s, sql)
}

#[test]
fn sort_marks_detail_and_commands() {
    let mut app = app_with("default");
    key(&mut app, '3');
    let _ = frame(&mut app, 120, 40);
    // Sort by the focused column (id), press again to reverse.
    key(&mut app, 's');
    assert!(app.tables["findings"].desc);
    let top = app.tables["findings"].selected().unwrap().key;
    assert_eq!(top, count_sql("SELECT max(finding_id) FROM findings"));
    key(&mut app, ' ');
    key(&mut app, ' ');
    assert_eq!(app.tables["findings"].marks.len(), 2);
    key(&mut app, 'V');
    assert!(app.tables["findings"].marks.is_empty());
    let at = app.tables["findings"].selected().unwrap().key;
    assert_eq!(at, top - 2, "marking moves down");
    code(&mut app, KeyCode::Enter);
    match &app.overlay {
        Overlay::Detail { title, lines, .. } => {
            assert_eq!(title, &format!("Finding {at}"));
            assert!(lines.iter().any(|l| l.starts_with("Detections:")), "{lines:?}");
        }
        _ => panic!("Enter opens the finding"),
    }
    code(&mut app, KeyCode::Esc);
    assert!(matches!(app.overlay, Overlay::None));
    // Hidden columns are not fetched with pages; showing one fills it for the rows in hand.
    let prio = app.tables["findings"].view.columns.iter().position(|c| c.name == "prio").unwrap();
    assert!(!app.tables["findings"].view.columns[prio].visible);
    assert_eq!(app.tables["findings"].selected().unwrap().cells[prio], "");
    key(&mut app, 'c');
    for _ in 0..prio {
        key(&mut app, 'j');
    }
    key(&mut app, ' ');
    code(&mut app, KeyCode::Esc);
    let want: String = Store::open_for_query(demo_db())
        .unwrap()
        .conn
        .query_row(&format!("SELECT priority FROM findings WHERE finding_id = {at}"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(app.tables["findings"].selected().unwrap().cells[prio], want);
    let (text, _) = frame(&mut app, 120, 40);
    assert!(text.contains("prio"), "{text}");
    app.command("theme light");
    assert_eq!(app.theme.name, "light");
    app.command("theme nope");
    assert!(app.message.as_ref().unwrap().1, "unknown theme is an error message");
    key(&mut app, 'q');
    assert!(app.quit);
}

#[test]
fn scopes_narrow_every_pane() {
    let mut app = app_with("default");
    key(&mut app, '2');
    key(&mut app, 'n');
    assert!(matches!(app.overlay, Overlay::Scope(_)));
    typed(&mut app, "pay-prod");
    code(&mut app, KeyCode::Tab);
    typed(&mut app, "bu=payments and env=prod");
    app.on_key(KeyEvent::new(KeyCode::Char('s'), KeyModifiers::CONTROL));
    app.settle(Duration::from_secs(10));
    // The sample estate comes with its scopes; the new one joins them.
    assert_eq!(app.scopes.len(), ctem::generator::demo::SCOPES.len() + 1);
    let sc = app.scopes.iter().find(|s| s.scope.name == "pay-prod").unwrap();
    let assets = count_sql("SELECT count(*) FROM assets WHERE lower(business_unit) = 'payments' AND lower(environment) = 'prod'");
    assert_eq!(sc.assets, assets);
    app.command("scope pay-prod");
    app.settle(Duration::from_secs(10));
    assert_eq!(app.header.assets, assets);
    key(&mut app, '3');
    key(&mut app, '3');
    let open_in_scope = count_sql(
        "SELECT count(*) FROM findings f JOIN assets a USING (asset_id) WHERE lower(a.business_unit) = 'payments' AND lower(a.environment) = 'prod'",
    );
    assert_eq!(app.tables["findings"].total, Some(open_in_scope));
    app.command("scope all");
    app.settle(Duration::from_secs(10));
    assert_eq!(app.header.assets, count_sql("SELECT count(*) FROM assets"));
}

/// A console on a read-only copy of the sample estate.
fn read_only_app() -> App {
    let d = tmpdir();
    let db = d.path().join("ro.duckdb");
    std::fs::copy(demo_db(), &db).unwrap();
    let store = Store::open(&db, true).unwrap();
    std::mem::forget(d);
    let mut app = App::new(Db::start(store), "ro".into(), Theme::builtin("default"), None, Keymap::default());
    app.start(None, None);
    app.settle(Duration::from_secs(10));
    app
}

#[test]
fn read_only_refuses_writes_with_a_reason() {
    let mut app = read_only_app();
    app.command("import /nonexistent");
    assert!(app.message.as_ref().unwrap().0.contains("read-only"));
    key(&mut app, '2');
    key(&mut app, 'n');
    assert!(matches!(app.overlay, Overlay::None));
    assert!(app.message.as_ref().unwrap().0.contains("read-only"));
}

#[test]
fn sql_pane_runs_the_statement_under_the_cursor() {
    let mut app = app_with("default");
    key(&mut app, '7');
    code(&mut app, KeyCode::Enter);
    assert!(app.sql.editing);
    code(&mut app, KeyCode::F(5));
    let t = &app.tables["sql"];
    assert_eq!(t.view.columns.iter().map(|c| c.name.to_string()).collect::<Vec<_>>(), vec!["severity", "open"]);
    assert_eq!(t.total, Some(5));
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELEC nonsense".into()]);
    app.sql.editing = true;
    code(&mut app, KeyCode::F(5));
    let (msg, err) = app.sql.status.clone().unwrap();
    assert!(err && msg.contains("syntax error") && msg.ends_with("(line 1, column 1)"), "{msg}");
    // The editor keeps the text.
    assert_eq!(app.sql.editor.lines(), ["SELEC nonsense"]);
}

fn run_sql_text(app: &mut App, text: &str) -> (String, bool) {
    app.sql.editor = tui_textarea::TextArea::new(text.lines().map(String::from).collect());
    app.sql.editing = true;
    code(app, KeyCode::F(5));
    app.sql.status.clone().unwrap()
}

#[test]
fn sql_pane_is_read_only_until_writes_are_allowed() {
    let mut app = app_with("default");
    key(&mut app, '7');
    let n = app.header.open;
    let findings = |app: &mut App| {
        run_sql_text(app, "SELECT count(*) AS n FROM findings");
        app.tables["sql"].total
    };
    assert_eq!(findings(&mut app), Some(1));
    for (stmt, why) in [
        ("DELETE FROM findings", "`:sql write` allows that"),
        ("DROP TABLE findings", "`:sql write` allows that"),
        ("ATTACH '/tmp/other.duckdb' AS o", "ATTACH is not allowed"),
        ("INSTALL httpfs", "INSTALL is not allowed"),
        ("COPY findings TO '/tmp/all-findings.csv'", "only inside the export directory"),
        ("SELECT * FROM read_csv('/etc/passwd')", "read_csv() reaches outside the store"),
    ] {
        let (m, err) = run_sql_text(&mut app, stmt);
        assert!(err && m.starts_with("refused: ") && m.contains(why), "{stmt}: {m}");
    }
    assert!(!std::path::Path::new("/tmp/all-findings.csv").exists());
    run_sql_text(&mut app, "SELECT count(*) AS n FROM findings WHERE true");
    assert_eq!(app.tables["sql"].total, Some(1));
    // :sql write asks first; `n` keeps writes off.
    app.command("sql write");
    assert!(app.sql.write_pending);
    key(&mut app, 'n');
    assert!(!app.sql.write);
    app.command("sql write");
    key(&mut app, 'y');
    assert!(app.sql.write);
    let (m, err) = run_sql_text(&mut app, "DELETE FROM findings WHERE finding_id = -1");
    assert!(!err && m.starts_with("statement ran in"), "{m}");
    // Still never: attaching, and files outside the export directory.
    let (m, err) = run_sql_text(&mut app, "ATTACH '/tmp/other.duckdb' AS o");
    assert!(err && m.contains("ATTACH is not allowed"), "{m}");
    app.command("sql read");
    let (m, _) = run_sql_text(&mut app, "DELETE FROM findings");
    assert!(m.contains("`:sql write` allows that"), "{m}");
    app.settle(Duration::from_secs(5));
    assert_eq!(app.header.open, n, "nothing changed");
    // History: the statements run come back with C-p.
    app.sql.editing = true;
    app.on_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL));
    assert_eq!(app.sql.editor.lines(), ["DELETE FROM findings"]);
    app.on_key(KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL));
    assert_eq!(app.sql.editor.lines(), ["ATTACH '/tmp/other.duckdb' AS o"]);
}

#[test]
fn a_slow_query_is_cancelled_at_once() {
    let mut app = app_with("default");
    key(&mut app, '7');
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELECT sum(a.range * b.range) AS s FROM range(200000000) a, range(100) b".into()]);
    app.sql.editing = true;
    app.on_key(KeyEvent::new(KeyCode::F(5), KeyModifiers::NONE));
    // The statement is planned at once; its page is what runs long.
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !app.tables.contains_key("sql") && std::time::Instant::now() < end {
        app.pump();
        std::thread::sleep(Duration::from_millis(5));
    }
    app.pump();
    std::thread::sleep(Duration::from_millis(400));
    assert!(app.db.pending > 0, "the query should still be running");
    let t = std::time::Instant::now();
    app.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(!app.quit, "C-c cancels the statement, not the console");
    app.settle(Duration::from_secs(5));
    let took = t.elapsed();
    assert_eq!(app.db.pending, 0);
    // The 200 ms budget is measured by `ctem bench --score`; here: the statement (seconds of work) stops at once.
    assert!(took < Duration::from_millis(1500), "cancel took {took:?}");
    assert!(app.message.clone().unwrap().0.to_ascii_lowercase().contains("interrupt"), "{:?}", app.message);
    // The console goes on.
    let (m, err) = run_sql_text(&mut app, "SELECT 42 AS answer");
    assert!(!err, "{m}");
}

#[test]
fn export_writes_the_filtered_rows() {
    let mut app = app_with("default");
    key(&mut app, '3');
    app.command("filter sev=critical");
    let d = tmpdir();
    let out = d.path().join("crit.csv");
    app.command(&format!("export {}", out.display()));
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !out.exists() && std::time::Instant::now() < end {
        app.settle(Duration::from_millis(100));
        app.pump();
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&out).unwrap();
    let rows = text.lines().count() as i64 - 1;
    assert_eq!(rows, count_sql("SELECT count(*) FROM findings WHERE severity = 'critical'"));
    assert!(text.lines().next().unwrap().starts_with("id,sev,status,asset"));
}

#[test]
fn fix_groups_drill_down_and_hand_off_to_mobilization() {
    let mut app = app_with("default");
    key(&mut app, '4');
    code(&mut app, KeyCode::Tab);
    assert_eq!(app.focused_table_id(), Some("fix_groups"));
    let (text, _) = frame(&mut app, 120, 40);
    assert!(text.contains("rebuild on a patched debian 12.2"), "{text}");
    // Enter: the queue narrowed to the 435 open findings that fix closes (11 more are mitigated).
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.focused_table_id(), Some("queue"));
    assert_eq!(app.tables["queue"].total, Some(435));
    // Back to the groups; `w` hands the group to Mobilization: one work item per owner.
    code(&mut app, KeyCode::Tab);
    key(&mut app, 'w');
    let m = app.message.clone().unwrap();
    // The sample's plan already holds the group's P3-and-above findings: the hand-off adds its P4s to them.
    assert!(!m.1 && m.0.starts_with("3 grown (159 findings) for corporate-platform, logistics-platform, payments-platform"), "{m:?}");
    // Again: nothing new, and it says why.
    key(&mut app, 'w');
    let m = app.message.clone().unwrap();
    assert!(m.1 && m.0.contains("446 already in open work items"), "{m:?}");
    // Two marked findings in the queue become one more work item.
    code(&mut app, KeyCode::Tab);
    app.command("filter priority=P4 and not fix~\"debian 12.2\"");
    app.settle(Duration::from_secs(10));
    key(&mut app, ' ');
    key(&mut app, ' ');
    key(&mut app, 'w');
    let m = app.message.clone().unwrap();
    assert!(!m.1 && m.0.contains("(2 findings)"), "{m:?}");
    assert!(app.tables["queue"].marks.is_empty());
    // Mobilization lists them; Enter opens a work item's findings.
    key(&mut app, '6');
    code(&mut app, KeyCode::Tab);
    assert_eq!(app.focused_table_id(), Some("work_items"));
    assert!(app.tables["work_items"].total.unwrap() >= 4);
    app.command("filter title~\"patched debian 12.2\"");
    app.settle(Duration::from_secs(10));
    let (text, _) = frame(&mut app, 200, 40);
    assert!(text.contains("rebuild on a patched debian") && text.contains("payments-platform"), "{text}");
    assert_eq!(app.tables["work_items"].total, Some(3), "{text}");
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.tab, 3);
    assert!(app.tables["queue"].filter_text.starts_with("work_item="));
    assert!(app.tables["queue"].total.unwrap() >= 1);
}

#[test]
fn validation_lists_the_controls() {
    let mut app = app_with("default");
    key(&mut app, '5');
    code(&mut app, KeyCode::Tab);
    // The coverage matrix: techniques the open findings expose (here from the rules: no CTID loaded).
    assert_eq!(app.focused_table_id(), Some("matrix"));
    let (text, _) = frame(&mut app, 120, 40);
    assert!(text.contains("Coverage matrix") && text.contains("T1552") && text.contains("T1190") && text.contains("OPEN"), "{text}");
    insta::assert_snapshot!("matrix_120x40", text);
    let (small, _) = frame(&mut app, 80, 24);
    insta::assert_snapshot!("matrix_80x24", small);
    // Enter: the findings behind a row.
    app.command("filter technique=T1552");
    app.settle(Duration::from_secs(10));
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.tab, 3);
    assert_eq!(app.tables["queue"].filter_text, "technique=T1552");
    assert_eq!(app.tables["queue"].total, Some(12), "the gitleaks secrets");
    // On a control-kind cell: the exposures on assets that kind of control covers.
    key(&mut app, '5');
    app.command("filter technique=T1190");
    app.settle(Duration::from_secs(10));
    let waf = app.tables["matrix"].visible_columns().iter().position(|&c| app.tables["matrix"].view.columns[c].name == "waf").unwrap();
    app.tables.get_mut("matrix").unwrap().col_cursor = waf;
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.tables["queue"].filter_text, "technique=T1190 and control_kind=waf");
    let n = app.tables["queue"].total.unwrap();
    assert!(n > 0 && n <= 102, "{n}");
    key(&mut app, '5');
    code(&mut app, KeyCode::Tab);
    assert_eq!(app.focused_table_id(), Some("controls"));
    let (text, _) = frame(&mut app, 120, 40);
    for want in ["ctl-waf-edge", "aws_web_applicatio", "degraded", "disabled", "10.0.0.0/8"] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert_eq!(app.tables["controls"].total, Some(10));
}

#[test]
fn board_columns_cards_moves_and_exceptions() {
    let mut app = app_with("default");
    key(&mut app, '6');
    assert!(app.board_visible());
    let (text, _) = frame(&mut app, 120, 40);
    insta::assert_snapshot!("board_120x40", text);
    let (small, _) = frame(&mut app, 80, 24);
    insta::assert_snapshot!("board_80x24", small);
    let new_total = app.board.cols[0].total;
    assert!(new_total > 100, "{new_total}");
    assert!(text.contains("NEW 190") && text.contains("7d late") && text.contains("past SLA"), "{text}");

    // One card: moves at once, and the store records who moved it.
    let first = app.board.selected().unwrap().id;
    key(&mut app, '>');
    assert_eq!(app.message.clone().unwrap(), (format!("#{first} moved to triaged"), false));
    assert_eq!(app.board.cols[0].total, new_total - 1);
    assert!(app.board.cols[1].cards.iter().any(|c| c.id == first));

    // Marked cards: the bulk move asks first; any other key cancels, Enter confirms.
    key(&mut app, ' ');
    key(&mut app, ' ');
    assert_eq!(app.board.marks.len(), 2);
    key(&mut app, '>');
    assert!(app.message.clone().unwrap().0.starts_with("move 2 marked cards to triaged?"), "{:?}", app.message);
    key(&mut app, 'n');
    assert_eq!(app.message.clone().unwrap().0, "move cancelled");
    assert_eq!(app.board.cols[0].total, new_total - 1);
    key(&mut app, '>');
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.message.clone().unwrap(), ("2 work items moved to triaged".into(), false));
    assert_eq!(app.board.cols[0].total, new_total - 3);
    assert!(app.board.marks.is_empty());

    // A card whose findings are still open cannot be verified: the reason is shown.
    key(&mut app, 'l');
    app.command("move verified");
    app.settle(Duration::from_secs(10));
    let (m, err) = app.message.clone().unwrap();
    assert!(err && m.contains("findings still open (last seen 2026-11-"), "{m}");

    // Assign through the command line `A` opens.
    key(&mut app, 'A');
    assert_eq!(app.input, Input::Command("assign ".into()));
    typed(&mut app, "dana");
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.message.clone().unwrap(), ("1 card assigned to dana".into(), false));
    assert!(app.board.cols[2].cards.iter().any(|c| c.assignee.as_deref() == Some("dana")), "assigning moves a triaged card to assigned");

    // Filter by team: every column narrows.
    key(&mut app, '/');
    typed(&mut app, "team=corporate-infra");
    code(&mut app, KeyCode::Enter);
    assert!(app.board.cols.iter().flat_map(|c| &c.cards).all(|c| c.team.as_deref() == Some("corporate-infra")));
    assert!(app.board.cols[0].total > 0 && app.board.cols[0].total < new_total);
    let (text, _) = frame(&mut app, 120, 40);
    assert!(text.contains("/team=corporate-infra"), "{text}");

    // A card opens with its findings, fix plan and history.
    key(&mut app, 'h');
    assert_eq!(app.board.col, 0);
    let id = app.board.selected().unwrap().id;
    code(&mut app, KeyCode::Enter);
    match &app.overlay {
        Overlay::Detail { title, lines, .. } => {
            assert_eq!(title, &format!("Work item #{id}"));
            let all = lines.join("\n");
            assert!(all.contains("Findings") && all.contains("\nFix\n") && all.contains("Until the fix lands") && all.contains("History"), "{all}");
        }
        _ => panic!("no card detail"),
    }
    code(&mut app, KeyCode::Esc);

    // An exception from the board: two people, and the card moves to RISK ACCEPTED.
    key(&mut app, 'x');
    assert_eq!(app.input, Input::Command("except risk_accepted 90d ".into()));
    code(&mut app, KeyCode::Esc);
    app.command("except risk_accepted 30d ben decommissioned next month, isolated VLAN");
    app.settle(Duration::from_secs(20));
    let (m, err) = app.message.clone().unwrap();
    assert!(!err && m.starts_with(&format!("exception #1 for #{id}:")), "{m}");
    assert!(app.board.cols[6].cards.iter().any(|c| c.id == id));
    app.command("except false_positive - ");
    assert!(app.message.clone().unwrap().0.starts_with("usage: :except"));
}

#[test]
fn board_refuses_changes_when_read_only() {
    let mut app = read_only_app();
    key(&mut app, '6');
    assert!(app.board.cols[0].total > 0);
    key(&mut app, '>');
    assert!(app.message.clone().unwrap().0.starts_with("read-only: cards cannot be moved"));
}

#[test]
fn marked_queue_findings_can_be_excepted() {
    let mut app = app_with("default");
    key(&mut app, '4');
    let before = app.tables["queue"].total.unwrap();
    key(&mut app, ' ');
    key(&mut app, ' ');
    key(&mut app, 'x');
    assert_eq!(app.input, Input::Command("except risk_accepted 90d ".into()));
    code(&mut app, KeyCode::Esc);
    // The requester approving their own exception is refused, whoever the console's user is.
    let me = ctem::store::default_actor();
    app.command(&format!("except risk_accepted 30d {me} scanner false alarm on the appliance"));
    app.settle(Duration::from_secs(20));
    let (m, err) = app.message.clone().unwrap();
    assert!(err && m.contains("must differ from the requester"), "{m}");
    assert_eq!(app.tables["queue"].total, Some(before));
    app.command("except risk_accepted 30d someone-else appliance decommissioned on 2026-12-01");
    app.settle(Duration::from_secs(20));
    let (m, err) = app.message.clone().unwrap();
    assert!(!err && m.ends_with("for the marked findings: 2 findings out of the queue"), "{m}");
    assert_eq!(app.tables["queue"].total, Some(before - 2));
    assert!(app.tables["queue"].marks.is_empty());
    // Mobilization lists it with its age and expiry.
    key(&mut app, '6');
    code(&mut app, KeyCode::Tab);
    code(&mut app, KeyCode::Tab);
    assert_eq!(app.focused_table_id(), Some("exceptions"));
    let (text, _) = frame(&mut app, 120, 40);
    assert!(text.contains("risk_accepted") && text.contains("someone-else") && text.contains("appliance decommission"), "{text}");
}

#[test]
fn sql_schema_browser_and_parquet_export() {
    let mut app = app_with("default");
    key(&mut app, '7');
    app.command("schema");
    app.settle(Duration::from_secs(10));
    match &app.overlay {
        Overlay::Schema { items, .. } => {
            assert!(items.iter().any(|i| i.0 == "findings" && i.1 == "table"));
            assert!(items.iter().any(|i| i.0 == "work_board" && i.1 == "view"));
            assert!(items.iter().any(|i| i.0 == "  risk_score" && i.1 == "DOUBLE · findings"));
        }
        _ => panic!("no schema browser"),
    }
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELECT * FROM ".into()]);
    app.sql.editor.move_cursor(tui_textarea::CursorMove::End);
    typed(&mut app, "work_bo");
    code(&mut app, KeyCode::Enter);
    assert!(matches!(app.overlay, Overlay::None));
    assert_eq!(app.sql.editor.lines(), ["SELECT * FROM work_board"]);
    let (m, err) = run_sql_text(&mut app, "SELECT severity, count(*) AS n FROM findings GROUP BY ALL ORDER BY 1");
    assert!(!err, "{m}");
    let d = tmpdir();
    let out = d.path().join("by-severity.parquet");
    app.command(&format!("export {}", out.display()));
    let end = std::time::Instant::now() + Duration::from_secs(20);
    while !out.exists() && std::time::Instant::now() < end {
        app.settle(Duration::from_millis(100));
        std::thread::sleep(Duration::from_millis(50));
    }
    app.settle(Duration::from_secs(5));
    assert_eq!(app.message.clone().unwrap().0, format!("exported 5 rows to {}", out.display()));
    let c = duckdb::Connection::open_in_memory().unwrap();
    let n: i64 = c.query_row(&format!("SELECT sum(n) FROM read_parquet('{}')", out.display()), [], |r| r.get(0)).unwrap();
    assert_eq!(n, count_sql("SELECT count(*) FROM findings"));
}

#[test]
fn saved_queries_become_queues() {
    let mut app = app_with("default");
    key(&mut app, '7');
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELECT finding_id FROM findings WHERE severity = 'critical' AND asset_name LIKE '%prod%'".into()]);
    app.command("save crit_prod");
    app.settle(Duration::from_secs(10));
    let (m, err) = app.sql.status.clone().unwrap();
    assert!(!err && m.starts_with("saved as 'crit_prod'"), "{m}");
    // The queue narrowed to the saved query's findings.
    key(&mut app, '4');
    app.command("filter saved=crit_prod");
    app.settle(Duration::from_secs(10));
    assert_eq!(
        app.tables["queue"].total,
        Some(count_sql("SELECT count(*) FROM findings WHERE severity = 'critical' AND asset_name LIKE '%prod%' AND status IN ('open', 'reopened')"))
    );
    app.command("filter saved=bad.name");
    assert!(app.message.clone().unwrap().0.contains("not the name of a saved query"), "{:?}", app.message);
    // Writes cannot be saved; saved queries load back into the editor.
    key(&mut app, '7');
    app.sql.editor = tui_textarea::TextArea::new(vec!["DELETE FROM findings".into()]);
    app.command("save oops");
    app.settle(Duration::from_secs(10));
    assert!(app.sql.status.clone().unwrap().0.contains("only a query can be saved"));
    app.command("load crit_prod");
    app.settle(Duration::from_secs(10));
    assert_eq!(app.sql.editor.lines(), ["SELECT finding_id FROM findings WHERE severity = 'critical' AND asset_name LIKE '%prod%'"]);
    // Saved queries are listed by name where the findings are: Q picks one as the queue.
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELECT severity, count(*) AS n FROM findings GROUP BY ALL".into()]);
    app.command("save by_sev");
    app.settle(Duration::from_secs(10));
    app.sql.editing = false;
    key(&mut app, '3');
    key(&mut app, 'Q');
    let Overlay::Queues { items, .. } = &app.overlay else { panic!("no queue picker") };
    let names: Vec<(&str, bool)> = items.iter().map(|(n, q, _)| (n.as_str(), *q)).collect();
    assert_eq!(names, [("by_sev", false), ("crit_prod", true)]);
    let (text, _) = frame(&mut app, 80, 24);
    assert!(text.contains("Saved queues") && text.contains("crit_prod") && text.contains("queue"), "{text}");
    key(&mut app, 'j');
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.tab, 2, "the Discovery findings stay in front");
    assert_eq!(app.tables["findings"].filter_text, "saved=crit_prod");
    assert_eq!(
        app.tables["findings"].total,
        Some(count_sql("SELECT count(*) FROM findings WHERE severity = 'critical' AND asset_name LIKE '%prod%'"))
    );
    // A query whose rows are not findings opens in the SQL editor instead.
    key(&mut app, 'Q');
    code(&mut app, KeyCode::Enter);
    assert_eq!(app.tab, 6);
    assert_eq!(app.sql.editor.lines(), ["SELECT severity, count(*) AS n FROM findings GROUP BY ALL"]);
    // From a pane without findings, `:queue NAME` goes to the ranked queue.
    app.command("queue crit_prod");
    app.settle(Duration::from_secs(10));
    assert_eq!((app.tab, app.focused_table_id()), (3, Some("queue")));
    assert_eq!(app.tables["queue"].filter_text, "saved=crit_prod");
    app.command("queue nope");
    app.settle(Duration::from_secs(10));
    assert_eq!(app.message.clone().unwrap(), ("no saved query 'nope' (queues: crit_prod)".to_string(), true));
    assert_eq!(app.tables["queue"].filter_text, "saved=crit_prod", "the queue stays as it was");
}

#[test]
fn standup_starts_where_the_last_one_ended() {
    let mut app = app_prepared("default", "INSERT INTO standup_log VALUES (TIMESTAMP '2026-11-16 09:05:00', TIMESTAMP '2026-11-16 06:00:00', 'report', NULL)");
    assert_eq!(app.standup.since, chrono::NaiveDate::from_ymd_opt(2026, 11, 16).unwrap().and_hms_opt(6, 0, 0));
    let (text, _) = frame(&mut app, 80, 24);
    assert!(text.contains("since the stand-up of 11-16 09:05"), "{text}");
    // Opening the console is not a stand-up; `:held` notes one.
    app.command("held");
    app.settle(Duration::from_secs(10));
    key(&mut app, '7');
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELECT count(*) FILTER (WHERE via = 'console'), max(data_until) FROM standup_log".into()]);
    app.command("run");
    app.settle(Duration::from_secs(10));
    let row = app.tables["sql"].rows[0].cells.clone();
    assert_eq!(row, ["1", "2026-11-23 06:00:00"]);
}

#[test]
fn standup_window_follows_since() {
    let mut app = app_with("default");
    let until = app.standup.until.unwrap();
    app.command("since 3d");
    app.settle(Duration::from_secs(10));
    assert_eq!(app.standup.since, Some(until - chrono::Duration::days(3)));
    let new: i64 = app.standup.by_severity.iter().map(|r| r.1).sum();
    let u = until.format("%Y-%m-%d %H:%M:%S");
    assert_eq!(
        new,
        count_sql(&format!("SELECT count(*) FROM findings WHERE first_seen > TIMESTAMP '{u}' - INTERVAL 3 DAY AND first_seen <= TIMESTAMP '{u}'"))
    );
    let (text, _) = frame(&mut app, 80, 24);
    assert!(text.contains("3 d up to the latest scan"), "{text}");
    app.command("since yesterday-ish");
    assert!(app.message.as_ref().is_some_and(|m| m.1), "{:?}", app.message);
    app.command("since");
    app.settle(Duration::from_secs(10));
    assert_eq!(app.standup.since, Some(until - chrono::Duration::hours(24)));
}

#[test]
fn every_standup_line_opens_the_findings_it_counts() {
    let mut app = app_with("default");
    let s = app.standup.clone();
    let jumps = app.standup_jumps();
    assert!(jumps.len() >= 14, "{jumps:?}");
    let mut checked = 0;
    for (i, j) in jumps.iter().enumerate() {
        key(&mut app, '1');
        if app.standup_table {
            code(&mut app, KeyCode::Tab);
        }
        app.standup_cursor = i;
        code(&mut app, KeyCode::Enter);
        let id = app.focused_table_id().unwrap_or_else(|| panic!("line {i} ({}) opened nothing", j.what));
        let t = &app.tables[id];
        assert_eq!(t.filter_text, j.filter, "{}", j.what);
        assert!(t.filter_error.is_none(), "{}: {:?}", j.what, t.filter_error);
        let total = t.total.unwrap_or(-1);
        let f = j.filter.as_str();
        let expected = if let Some(sev) = f.strip_prefix("sev=") {
            let (_, n, fx, ro) = s.by_severity.iter().find(|r| r.0 == sev).unwrap();
            n + fx + ro
        } else if f.is_empty() && id == "standup" {
            s.by_severity.iter().map(|r| r.1 + r.2 + r.3).sum()
        } else if f.is_empty() {
            s.open_now
        } else if f == "change=new" {
            s.new_by_priority.iter().sum()
        } else if f.starts_with("change=new and kev=true") {
            s.new_kev
        } else if f == "prio>=P2" {
            s.p1_p2_now
        } else if f.starts_with("prio=P") {
            continue;
        } else if f.starts_with("status=fixed and prio>=P2") {
            let u = s.until.unwrap().format("%Y-%m-%d %H:%M:%S");
            count_sql(&format!(
                "SELECT count(*) FROM findings WHERE status = 'fixed' AND priority IN ('P1', 'P2')
                 AND fixed_at > TIMESTAMP '{u}' - INTERVAL 30 DAY AND fixed_at <= TIMESTAMP '{u}'"
            ))
        } else if f.starts_with("due<") {
            s.sla_past_due
        } else if f.starts_with("due>=") {
            s.sla_due_3d
        } else if let Some(imp) = f.strip_prefix("import=") {
            count_sql(&format!("SELECT count(DISTINCT finding_id) FROM detections WHERE import_id = {imp}"))
        } else if j.what.contains("rescans verified") {
            s.work_verified.len() as i64
        } else if j.what.contains("regressions reopened") {
            s.work_reopened.len() as i64
        } else {
            panic!("a line not checked: {j:?}")
        };
        assert_eq!(total, expected, "line {i}: {} (/{})", j.what, j.filter);
        assert!(app.message.as_ref().is_some_and(|m| m.0.starts_with(&j.what)), "{:?}", app.message);
        checked += 1;
    }
    assert!(checked >= 12, "{checked}");
    // At 80x24 the summary scrolls to keep the cursor's line in sight.
    key(&mut app, '1');
    app.standup_cursor = 0;
    let (text, _) = frame(&mut app, 80, 24);
    assert!(text.contains("critical") && !text.contains("Imports in the window"), "{text}");
    app.standup_cursor = jumps.len() - 1;
    let (text, _) = frame(&mut app, 80, 24);
    let last = &s.imports.last().unwrap().1;
    assert!(text.contains(&last[..20]), "{last}\n{text}");
}

#[test]
fn sql_selection_runs_as_selected() {
    let mut app = app_with("default");
    key(&mut app, '7');
    app.sql.editor = tui_textarea::TextArea::new(vec!["SELECT 1 AS a; SELECT count(*) AS n FROM assets WHERE kind = 'host';".into()]);
    // Select `SELECT count(*) AS n FROM assets` (characters 15 to 47) and run it.
    app.sql.editor.move_cursor(tui_textarea::CursorMove::Jump(0, 15));
    app.sql.editor.start_selection();
    app.sql.editor.move_cursor(tui_textarea::CursorMove::Jump(0, 47));
    assert_eq!(app.statement_at_cursor(), "SELECT count(*) AS n FROM assets");
}
