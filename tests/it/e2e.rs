//! The real binary in a real terminal (tmux): open the demo, visit every tab, filter, open a detail,
//! quit, and check the terminal is back in cooked mode.

use crate::common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("tmux is needed for the end-to-end test");
        String::from_utf8_lossy(&out.stdout).to_string()
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "e2e"];
        a.extend_from_slice(keys);
        self.run(&a);
    }
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "e2e"])
    }
    /// Wait until the screen shows `text` (generously: the other tests load the machine meanwhile).
    fn wait_for(&self, text: &str) -> String {
        let end = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            if Instant::now() > end {
                panic!("screen never showed {text:?}; it shows:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.socket).arg("kill-server").output();
    }
}

#[test]
fn demo_in_a_real_terminal() {
    let d = tmpdir();
    let bin = env!("CARGO_BIN_EXE_ctem");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample-data");
    let stty = d.path().join("stty.txt");
    let script = format!(
        "CTEM_DATA_DIR={data} CTEM_CONFIG_DIR={data}/cfg {bin} demo --data {repo} --db {data}/demo.duckdb; stty -a > {stty}; sleep 5",
        data = d.path().display(),
        repo = repo.display(),
        stty = stty.display()
    );
    let t = Tmux { socket: format!("ctem-e2e-{}", std::process::id()) };
    t.run(&["new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40", &script]);
    let s = t.wait_for("What changed");
    assert!(s.contains("1 Stand-up") && s.contains("7 SQL"), "{s}");
    for (key, text) in [
        ("2", "Coverage per scope"),
        ("3", "[Findings]"),
        ("4", "Open queue"),
        ("5", "Rescan verification"),
        ("6", "Board "),
        ("7", "F5, C-Enter or :run"),
        ("3", "[Findings]"),
    ] {
        t.keys(&[key]);
        t.wait_for(text);
    }
    t.keys(&["/"]);
    t.keys(&["-l", "sev>=critical log4j"]);
    t.keys(&["Enter"]);
    t.wait_for("/sev>=critical log4j");
    let s = t.wait_for("Log4j");
    assert!(!s.contains(" high "), "only critical rows:\n{s}");
    t.keys(&["Enter"]);
    let s = t.wait_for("Risk ");
    assert!(s.contains("KEV CVE-2021-44228") && s.contains("Fix ("), "{s}");
    t.keys(&["Escape"]);
    t.keys(&["?"]);
    t.wait_for("this help");
    t.keys(&["Escape"]);
    t.keys(&["q"]);
    let end = Instant::now() + Duration::from_secs(20);
    while !stty.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    let modes = std::fs::read_to_string(&stty).expect("the console exited and the shell ran stty");
    assert!(modes.contains(" icanon") && !modes.contains("-icanon"), "terminal left in raw mode:\n{modes}");
    assert!(modes.contains(" echo ") && !modes.contains("-echo "), "echo not restored:\n{modes}");
}
