//! Large generated estates for benchmarks: N findings in one Nessus, Trivy (k8s) or Grype report.
//! Checks and packages are synthetic (numbered), sized and shaped like real ones.

use super::{create, xml_escape};
use std::io::Write;
use std::path::{Path, PathBuf};

const CHECKS: usize = 5000;
const PER_ASSET: usize = 100;

fn desc(k: usize) -> String {
    format!(
        "According to its self-reported version, the remote service is affected by synthetic issue {k}: a heap-based buffer overflow \
         in request parsing allows a remote, unauthenticated attacker to crash the service or execute arbitrary code. \
         Note that the scanner has not tested for this issue but has instead relied only on the application's self-reported version number."
    )
}

/// Write an estate of `n` findings in `format`; `week` 0 or 1 (week 1: 5% fixed, 3% new) for lifecycle benchmarks.
pub fn write_week(dir: &Path, n: usize, format: &str, week: usize) -> anyhow::Result<PathBuf> {
    let assets = n.div_ceil(PER_ASSET);
    let keep = |a: usize, j: usize| -> bool { week == 0 || (a * 31 + j * 7) % 100 >= 5 };
    match format {
        "nessus" => {
            let path = dir.join(format!("estate-{n}-w{week}.nessus"));
            let mut w = create(&path)?;
            writeln!(w, "<?xml version=\"1.0\" ?>\n<NessusClientData_v2>\n<Report name=\"bench\">")?;
            let day = if week == 0 { "Mon Nov 16 02:00:00 2026" } else { "Mon Nov 23 02:00:00 2026" };
            let mut written = 0;
            for a in 0..assets {
                let ip = format!("10.{}.{}.{}", a / 65536 % 256, a / 256 % 256, a % 256);
                writeln!(w, "<ReportHost name=\"{ip}\"><HostProperties><tag name=\"host-ip\">{ip}</tag><tag name=\"host-fqdn\">h{a}.bench.example</tag><tag name=\"operating-system\">Ubuntu 22.04 LTS</tag><tag name=\"HOST_END\">{day}</tag></HostProperties>")?;
                for j in 0..PER_ASSET {
                    if written >= n {
                        break;
                    }
                    written += 1;
                    let k = (a * 37 + j * 101 + if week == 1 && !keep(a, j) { 13 } else { 0 }) % CHECKS;
                    let sev = k % 5;
                    writeln!(w, "<ReportItem port=\"{}\" svc_name=\"www\" protocol=\"tcp\" severity=\"{sev}\" pluginID=\"{}\" pluginName=\"Synthetic check {k}\" pluginFamily=\"Misc.\">", 1000 + k % 50, 300000 + k)?;
                    // One check in 25 also names a real CVE (most on CISA KEV), so exploit intel has work to do.
                    if k % 25 == 3 {
                        let p = &super::catalog::PLUGINS[(k / 25) % super::catalog::PLUGINS.len()];
                        if let Some(c) = p.cves.first() {
                            writeln!(w, "<cve>{c}</cve>")?;
                        }
                    }
                    writeln!(w, "<cve>CVE-2025-{}</cve><cvss3_base_score>{:.1}</cvss3_base_score><risk_factor>High</risk_factor>", 10000 + k, 2.0 + (k % 80) as f64 / 10.0)?;
                    writeln!(w, "<synopsis>The remote service is affected by synthetic issue {k}.</synopsis><description>{}</description><solution>Upgrade to version {}.{} or later.</solution></ReportItem>", xml_escape(&desc(k)), k % 9 + 1, k % 17)?;
                }
                writeln!(w, "</ReportHost>")?;
            }
            writeln!(w, "</Report>\n</NessusClientData_v2>")?;
            Ok(path)
        }
        "trivy" => {
            let path = dir.join(format!("estate-{n}-w{week}.trivy.json"));
            let mut w = create(&path)?;
            write!(w, "{{\"ClusterName\":\"bench\",\"CreatedAt\":\"2026-11-{}T04:00:00Z\",\"Resources\":[", if week == 0 { 16 } else { 23 })?;
            let mut written = 0;
            for a in 0..assets {
                if a > 0 {
                    write!(w, ",")?;
                }
                write!(w, "{{\"Namespace\":\"ns{}\",\"Kind\":\"Deployment\",\"Name\":\"app{a}\",\"Results\":[{{\"Target\":\"registry.bench/app{a}:1.0 (debian 12.2)\",\"Class\":\"os-pkgs\",\"Type\":\"debian\",\"Vulnerabilities\":[", a % 20)?;
                for j in 0..PER_ASSET {
                    if written >= n {
                        break;
                    }
                    written += 1;
                    if j > 0 {
                        write!(w, ",")?;
                    }
                    let k = (a * 37 + j * 101 + if week == 1 && !keep(a, j) { 13 } else { 0 }) % CHECKS;
                    let sev = ["LOW", "MEDIUM", "HIGH", "CRITICAL", "UNKNOWN"][k % 5];
                    let v = serde_json::json!({"VulnerabilityID": format!("CVE-2025-{}", 10000 + k), "PkgName": format!("lib{}", k % 700),
                        "InstalledVersion": format!("1.{}.0-1", k % 13), "FixedVersion": format!("1.{}.1-1", k % 13), "Status": "fixed",
                        "Title": format!("lib{}: synthetic issue {k}", k % 700), "Description": desc(k), "Severity": sev,
                        "CweIDs": [format!("CWE-{}", 20 + k % 100)], "CVSS": {"nvd": {"V3Score": 2.0 + (k % 80) as f64 / 10.0}}});
                    serde_json::to_writer(&mut w, &v)?;
                }
                write!(w, "]}}]}}")?;
            }
            writeln!(w, "]}}")?;
            Ok(path)
        }
        "grype" => {
            let path = dir.join(format!("estate-{n}-w{week}.grype.json"));
            let mut w = create(&path)?;
            write!(w, "{{\"matches\":[")?;
            for i in 0..n {
                if i > 0 {
                    write!(w, ",")?;
                }
                let k = if week == 1 && (i * 7) % 100 < 5 { i + n } else { i };
                let sev = ["Low", "Medium", "High", "Critical", "Negligible"][k % 5];
                let score = 2.0 + (k % 80) as f64 / 10.0;
                let v = serde_json::json!({
                    "vulnerability": {"id": format!("CVE-2025-{}", 10000 + k % CHECKS), "severity": sev,
                        "description": desc(k % CHECKS), "cvss": [{"version": "3.1", "vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "metrics": {"baseScore": score}}],
                        "fix": {"versions": [format!("{}.1", k / CHECKS)], "state": "fixed"}},
                    "relatedVulnerabilities": [],
                    "artifact": {"name": format!("pkg{}", k / CHECKS), "version": format!("{}.0", k / CHECKS), "type": "java-archive", "locations": [{"path": format!("/app/lib/pkg{}.jar", k / CHECKS)}]}
                });
                serde_json::to_writer(&mut w, &v)?;
            }
            write!(w, "],\"source\":{{\"type\":\"image\",\"target\":{{\"userInput\":\"registry.bench/monolith:1.0\",\"imageID\":\"sha256:{:064x}\"}}}},\"descriptor\":{{\"name\":\"grype\",\"version\":\"0.80.0\"}}}}", 42)?;
            writeln!(w)?;
            Ok(path)
        }
        other => anyhow::bail!("unknown estate format '{other}' (nessus, trivy or grype)"),
    }
}

pub fn write(dir: &Path, n: usize, format: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    write_week(dir, n, format, 0)
}
