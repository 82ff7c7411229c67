//! The sample estate: a fictional freight company, Northwind Harbour, with three business units,
//! prod/staging/dev, ~1,500 assets, a CMDB export, and reports from five kinds of tool over three weekly scans.

use super::catalog::{GITLEAKS, KSV, PKG_VULNS, PLUGINS, PROWLER, SEMGREP};
use super::{create, xml_escape, Rng};
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::json;
use std::io::Write;
use std::path::Path;

pub const BUS: [(&str, &str, &str); 3] = [("payments", "Payments", "pay"), ("logistics", "Logistics", "log"), ("corporate", "Corporate IT", "corp")];
pub const WEEKS: [&str; 3] = ["2026-11-09", "2026-11-16", "2026-11-23"];

pub struct Host {
    pub hostname: String,
    pub fqdn: String,
    pub ip: String,
    pub os: &'static str,
    pub role: &'static str,
    pub bu: usize,
    pub env: &'static str,
    pub owner: String,
    pub criticality: u8,
    pub internet: bool,
}

pub struct Workload {
    pub cluster: &'static str,
    pub ns: &'static str,
    pub name: String,
    pub image: String,
    pub base: &'static str,
    pub eco: &'static str,
    pub bu: usize,
    pub env: &'static str,
    pub owner: String,
    pub criticality: u8,
    pub internet: bool,
}

pub struct Cloud {
    pub arn: String,
    pub name: String,
    pub kind: usize,
    pub account: &'static str,
    pub region: &'static str,
    pub bu: usize,
    pub env: &'static str,
    pub owner: String,
    pub criticality: u8,
    pub internet: bool,
}

pub struct Repo {
    pub url: String,
    pub name: String,
    pub ext: &'static str,
    pub bu: usize,
    pub owner: String,
}

pub struct Estate {
    pub hosts: Vec<Host>,
    pub workloads: Vec<Workload>,
    pub clouds: Vec<Cloud>,
    pub repos: Vec<Repo>,
}

fn env_for(r: &mut Rng) -> &'static str {
    match r.below(4) {
        0 | 1 => "prod",
        2 => "staging",
        _ => "dev",
    }
}

const ROLES: [(&str, &[&str]); 3] = [
    ("payments", &["web", "app", "app", "db", "batch", "jump"]),
    ("logistics", &["web", "app", "app", "db", "batch", "app"]),
    ("corporate", &["dc", "mail", "file", "app", "web", "jump"]),
];
const SERVICES: [&[&str]; 3] = [
    &["checkout-api", "card-vault", "ledger", "fraud-scoring", "payout-worker", "merchant-portal", "refunds", "settlement"],
    &["route-planner", "tracking-api", "fleet-telemetry", "warehouse-sync", "customs-docs", "eta-predictor", "dock-scheduler", "carrier-gateway"],
    &["intranet", "hr-portal", "sso-proxy", "expense-api", "wiki", "helpdesk", "asset-registry", "mail-relay"],
];

pub fn estate() -> Estate {
    let mut r = Rng::new(0x6e77_6861_7262_6f72);
    let mut hosts = Vec::new();
    for i in 0..1000usize {
        let bu = i % 3;
        let env = env_for(&mut r);
        let role = *r.pick(ROLES[bu].1);
        let os: &'static str = match role {
            "dc" | "mail" | "file" => *r.pick(&["Microsoft Windows Server 2019 Standard", "Microsoft Windows Server 2022 Standard", "Microsoft Windows Server 2012 R2 Standard"]),
            "app" if r.chance(0.2) => "Microsoft Windows Server 2019 Standard",
            _ => *r.pick(&["Ubuntu 22.04 LTS", "Red Hat Enterprise Linux 8.8", "Ubuntu 20.04 LTS", "Debian 12"]),
        };
        let hostname = format!("{}-{}-{}{:03}", BUS[bu].2, env, role, i / 3 + 1);
        let fqdn = format!("{hostname}.{}.nwh.example", BUS[bu].0);
        let env_idx = match env { "prod" => 0, "staging" => 1, _ => 2 };
        let ip = format!("10.{}.{}.{}", bu * 16 + env_idx, (i / 3) / 250, (i / 3) % 250 + 1);
        let internet = (role == "web" && env == "prod") || (role == "mail") || (role == "web" && r.chance(0.2));
        let criticality = match (env, role) {
            ("prod", "db") | ("prod", "dc") => 5,
            ("prod", _) => 4,
            ("staging", _) => 3,
            _ => 2,
        };
        let owner = match role {
            "dc" | "file" | "jump" => format!("{}-infra", BUS[bu].0),
            "mail" => "corporate-messaging".to_string(),
            "db" => format!("{}-data", BUS[bu].0),
            _ => format!("{}-platform", BUS[bu].0),
        };
        hosts.push(Host { hostname, fqdn, ip, os, role, bu, env, owner, criticality, internet });
    }
    let mut workloads = Vec::new();
    for i in 0..240usize {
        let bu = i % 3;
        let env = env_for(&mut r);
        let svc = SERVICES[bu][(i / 3) % SERVICES[bu].len()];
        let name = format!("{svc}-{}", i / 24 + 1);
        let cluster = if env == "prod" { "prod-eks" } else { "nonprod-eks" };
        let base = if r.chance(0.7) { "debian" } else { "alpine" };
        let eco = *r.pick(&["jar", "npm", "pip"]);
        let image = format!("registry.nwh.example/{}/{svc}:1.{}.{}", BUS[bu].0, r.below(20), r.below(10));
        let internet = svc.contains("api") || svc.contains("portal") || svc.contains("gateway");
        let criticality = if env == "prod" { if BUS[bu].0 == "payments" { 5 } else { 4 } } else { 2 };
        workloads.push(Workload {
            cluster,
            ns: BUS[bu].0,
            name,
            image,
            base,
            eco,
            bu,
            env,
            owner: format!("{}-platform", BUS[bu].0),
            criticality,
            internet: internet && env == "prod",
        });
    }
    let accounts = [("prod", "111122223333"), ("staging", "444455556666"), ("dev", "777788889999")];
    let mut clouds = Vec::new();
    for i in 0..200usize {
        let bu = i % 3;
        let env = env_for(&mut r);
        let account = accounts.iter().find(|a| a.0 == env).unwrap().1;
        let region = *r.pick(&["eu-west-1", "eu-central-1", "us-east-1"]);
        let kind = i % 5;
        let (arn, name) = match kind {
            0 => {
                let n = format!("nwh-{}-{}-{}-{:03}", BUS[bu].2, *r.pick(&["exports", "logs", "invoices", "backups", "assets"]), env, i);
                (format!("arn:aws:s3:::{n}"), n)
            }
            1 => {
                let n = format!("sg-0{:016x}", r.next() >> 4);
                (format!("arn:aws:ec2:{region}:{account}:security-group/{n}"), n)
            }
            2 => {
                let n = format!("i-0{:016x}", r.next() >> 4);
                (format!("arn:aws:ec2:{region}:{account}:instance/{n}"), n)
            }
            3 => {
                let n = format!("nwh-{}-db-{env}-{i}", BUS[bu].2);
                (format!("arn:aws:rds:{region}:{account}:db:{n}"), n)
            }
            _ => {
                let n = format!("svc-{}-{i}", BUS[bu].2);
                (format!("arn:aws:iam::{account}:user/{n}"), n)
            }
        };
        clouds.push(Cloud {
            arn,
            name,
            kind,
            account,
            region,
            bu,
            env,
            owner: format!("{}-cloud", BUS[bu].0),
            criticality: if env == "prod" { 4 } else { 2 },
            internet: kind == 0 && r.chance(0.2) || kind == 1 && r.chance(0.3),
        });
    }
    let mut repos = Vec::new();
    for i in 0..60usize {
        let bu = i % 3;
        let svc = SERVICES[bu][(i / 3) % SERVICES[bu].len()];
        let name = if i < 24 { svc.to_string() } else { format!("{svc}-{}", i / 24) };
        let ext = *r.pick(&["py", "js", "java", "go"]);
        repos.push(Repo {
            url: format!("https://git.nwh.example/{}/{name}", BUS[bu].0),
            name,
            ext,
            bu,
            owner: format!("{}-platform", BUS[bu].0),
        });
    }
    Estate { hosts, workloads, clouds, repos }
}

fn applies(os: &str, role: &str, p: &str) -> bool {
    let win = os.contains("Windows");
    match p {
        "win" => win,
        "linux" => !win,
        "dc" => role == "dc",
        "mail" => role == "mail",
        "web" => role == "web" || role == "app" && !win,
        "db" => role == "db",
        _ => true,
    }
}

/// Presence of one finding over the three weeks: persists, gets fixed, and sometimes comes back.
fn presence(r: &mut Rng, p: f64) -> [bool; 3] {
    let w1 = r.chance(p);
    let w2 = if w1 { r.chance(0.85) } else { r.chance(p * 0.15) };
    let w3 = if w2 { r.chance(0.88) } else if w1 { r.chance(0.35) } else { r.chance(p * 0.1) };
    [w1, w2, w3]
}

/// (host index, plugin index) -> weeks present.
pub fn host_findings(e: &Estate) -> Vec<(usize, usize, [bool; 3])> {
    let mut r = Rng::new(0x6e65_7373_7573);
    let mut out = Vec::new();
    for (hi, h) in e.hosts.iter().enumerate() {
        for (pi, p) in PLUGINS.iter().enumerate() {
            if !applies(h.os, h.role, p.os) {
                continue;
            }
            if p.sev == 0 {
                out.push((hi, pi, [true; 3]));
                continue;
            }
            let base = match p.sev {
                4 => 0.06,
                3 => 0.12,
                2 => 0.3,
                _ => 0.5,
            };
            let base = if p.id == 108797 && h.os.contains("2012") { 0.95 } else if p.id == 108797 { 0.0 } else { base };
            let w = presence(&mut r, base);
            if w.iter().any(|x| *x) {
                out.push((hi, pi, w));
            }
        }
    }
    out
}

fn nessus_time(day: &str, minutes: usize) -> String {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
    let t: NaiveDateTime = d.and_hms_opt(2, 0, 0).unwrap() + chrono::Duration::minutes(minutes as i64);
    t.format("%a %b %d %H:%M:%S %Y").to_string()
}

fn sev_word(s: u8) -> &'static str {
    ["None", "Low", "Medium", "High", "Critical"][s as usize]
}

pub fn write_nessus(w: &mut dyn Write, e: &Estate, finds: &[(usize, usize, [bool; 3])], week: usize) -> std::io::Result<()> {
    writeln!(w, "<?xml version=\"1.0\" ?>\n<NessusClientData_v2>\n<Policy><policyName>NWH weekly internal scan</policyName></Policy>")?;
    writeln!(w, "<Report name=\"NWH weekly {}\" xmlns:cm=\"http://www.nessus.org/cm\">", WEEKS[week])?;
    let mut fi = 0;
    for (hi, h) in e.hosts.iter().enumerate() {
        writeln!(w, "<ReportHost name=\"{}\"><HostProperties>", h.ip)?;
        writeln!(w, "<tag name=\"HOST_START\">{}</tag>", nessus_time(WEEKS[week], hi / 20))?;
        writeln!(w, "<tag name=\"host-ip\">{}</tag>\n<tag name=\"host-fqdn\">{}</tag>\n<tag name=\"operating-system\">{}</tag>", h.ip, h.fqdn, h.os)?;
        if h.os.contains("Windows") {
            writeln!(w, "<tag name=\"netbios-name\">{}</tag>", h.hostname.to_ascii_uppercase())?;
        }
        writeln!(w, "<tag name=\"HOST_END\">{}</tag>\n</HostProperties>", nessus_time(WEEKS[week], hi / 20 + 4))?;
        while fi < finds.len() && finds[fi].0 == hi {
            let (_, pi, weeks) = finds[fi];
            fi += 1;
            if !weeks[week] {
                continue;
            }
            let p = &PLUGINS[pi];
            let svc = match p.port { 22 => "ssh", 80 | 8080 => "www", 443 => "https", 445 => "cifs", 3389 => "msrdp", 5432 => "postgresql", 3306 => "mysql", _ => "general" };
            writeln!(
                w,
                "<ReportItem port=\"{}\" svc_name=\"{svc}\" protocol=\"tcp\" severity=\"{}\" pluginID=\"{}\" pluginName=\"{}\" pluginFamily=\"{}\">",
                p.port,
                p.sev,
                p.id,
                xml_escape(p.name),
                if p.os == "win" || p.os == "dc" || p.os == "mail" { "Windows" } else if p.sev == 0 { "General" } else { "Misc." }
            )?;
            for c in p.cves {
                writeln!(w, "<cve>{c}</cve>")?;
            }
            if p.sev > 0 {
                writeln!(w, "<cvss3_base_score>{:.1}</cvss3_base_score>", p.cvss)?;
                writeln!(w, "<risk_factor>{}</risk_factor>", sev_word(p.sev))?;
            } else {
                writeln!(w, "<risk_factor>None</risk_factor>")?;
            }
            if p.exploit {
                writeln!(w, "<exploit_available>true</exploit_available>")?;
            }
            writeln!(w, "<synopsis>{}</synopsis>", xml_escape(&format!("The remote host is affected by: {}.", p.name)))?;
            writeln!(w, "<description>{}</description>", xml_escape(&format!("According to its self-reported version or banner, the remote host is affected by {}. An unauthenticated or local attacker may be able to exploit this issue.", p.name)))?;
            if !p.solution.is_empty() {
                writeln!(w, "<solution>{}</solution>", xml_escape(p.solution))?;
            }
            writeln!(w, "</ReportItem>")?;
        }
        writeln!(w, "</ReportHost>")?;
    }
    writeln!(w, "</Report>\n</NessusClientData_v2>")
}

pub fn write_qualys(w: &mut dyn Write, e: &Estate, finds: &[(usize, usize, [bool; 3])], week: usize) -> std::io::Result<()> {
    writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<!DOCTYPE ASSET_DATA_REPORT SYSTEM \"https://qualysguard.qualys.com/asset_data_report.dtd\">\n<ASSET_DATA_REPORT>")?;
    writeln!(w, "<HEADER><COMPANY><![CDATA[Northwind Harbour]]></COMPANY><GENERATION_DATETIME>{}T06:00:00Z</GENERATION_DATETIME></HEADER>\n<HOST_LIST>", WEEKS[week])?;
    let mut used = std::collections::BTreeSet::new();
    let mut fi = 0;
    for (hi, h) in e.hosts.iter().enumerate() {
        let in_scope = h.bu == 0;
        let start = fi;
        while fi < finds.len() && finds[fi].0 == hi {
            fi += 1;
        }
        if !in_scope {
            continue;
        }
        writeln!(w, "<HOST><IP>{}</IP><TRACKING_METHOD>IP</TRACKING_METHOD><DNS><![CDATA[{}]]></DNS><OPERATING_SYSTEM><![CDATA[{}]]></OPERATING_SYSTEM><VULN_INFO_LIST>", h.ip, h.fqdn, h.os)?;
        for &(_, pi, weeks) in &finds[start..fi] {
            if !weeks[week] {
                continue;
            }
            let p = &PLUGINS[pi];
            used.insert(pi);
            let t = if p.sev == 0 { "Ig" } else { "Vuln" };
            writeln!(w, "<VULN_INFO><QID id=\"qid_{q}\">{q}</QID><TYPE>{t}</TYPE><PORT>{}</PORT><PROTOCOL>tcp</PROTOCOL><SSL>false</SSL><FIRST_FOUND>{}T05:00:00Z</FIRST_FOUND><LAST_FOUND>{}T05:00:00Z</LAST_FOUND><VULN_STATUS>Active</VULN_STATUS></VULN_INFO>", p.port, WEEKS[0], WEEKS[week], q = p.qid)?;
        }
        writeln!(w, "</VULN_INFO_LIST></HOST>")?;
    }
    writeln!(w, "</HOST_LIST>\n<GLOSSARY><VULN_DETAILS_LIST>")?;
    for pi in used {
        let p = &PLUGINS[pi];
        write!(w, "<VULN_DETAILS id=\"qid_{q}\"><QID id=\"qid_{q}\">{q}</QID><TITLE><![CDATA[{}]]></TITLE><SEVERITY>{}</SEVERITY><CATEGORY>General remote services</CATEGORY>", p.name, (p.sev + 1).min(5), q = p.qid)?;
        write!(w, "<THREAT><![CDATA[The host is affected by {}.]]></THREAT><IMPACT><![CDATA[Successful exploitation may compromise the host.]]></IMPACT><SOLUTION><![CDATA[{}]]></SOLUTION>", p.name, if p.solution.is_empty() { "N/A" } else { p.solution })?;
        if !p.cves.is_empty() {
            write!(w, "<CVE_ID_LIST>")?;
            for c in p.cves {
                write!(w, "<CVE_ID><ID><![CDATA[{c}]]></ID><URL><![CDATA[https://nvd.nist.gov/vuln/detail/{c}]]></URL></CVE_ID>")?;
            }
            write!(w, "</CVE_ID_LIST>")?;
        }
        if p.sev > 0 {
            write!(w, "<CVSS3_SCORE><CVSS3_BASE>{:.1}</CVSS3_BASE></CVSS3_SCORE>", p.cvss)?;
        }
        writeln!(w, "</VULN_DETAILS>")?;
    }
    writeln!(w, "</VULN_DETAILS_LIST></GLOSSARY>\n</ASSET_DATA_REPORT>")
}

pub fn write_trivy(w: &mut dyn Write, e: &Estate, cluster: &str, week: usize) -> std::io::Result<()> {
    let mut r = Rng::new(0x7472_6976_79);
    let mut resources = Vec::new();
    for wl in &e.workloads {
        // Draw the same choices every week, so a workload's findings only change when it is upgraded.
        let upgraded = r.chance(0.25);
        let mut os_v = Vec::new();
        let mut app_v = Vec::new();
        for v in PKG_VULNS {
            let hit = r.chance(0.55);
            if !hit || (week == 2 && upgraded && !v.fixed.is_empty()) {
                continue;
            }
            let status = if v.fixed.is_empty() { "affected" } else { "fixed" };
            let item = json!({
                "VulnerabilityID": v.cve, "PkgName": v.pkg, "InstalledVersion": v.installed, "FixedVersion": v.fixed,
                "Status": status, "SeveritySource": "nvd", "PrimaryURL": format!("https://avd.aquasec.com/nvd/{}", v.cve.to_ascii_lowercase()),
                "Title": v.title, "Description": format!("{} ({}).", v.title, v.cve), "Severity": v.sev, "CweIDs": [v.cwe],
                "CVSS": {"nvd": {"V3Score": v.cvss}}
            });
            if v.eco == wl.base {
                os_v.push(item);
            } else if v.eco == wl.eco {
                app_v.push(item);
            }
        }
        let mis: Vec<_> = KSV
            .iter()
            .filter(|_| r.chance(0.35))
            .map(|(id, avd, title, sev, res)| {
                json!({"Type": "Kubernetes Security Check", "ID": id, "AVDID": avd, "Title": title, "Description": title,
                       "Message": format!("Container '{}' of Deployment '{}' should not: {}", wl.name, wl.name, title.to_ascii_lowercase()),
                       "Resolution": res, "Severity": sev, "Status": "FAIL", "CauseMetadata": {"Provider": "Kubernetes", "Service": "general"}})
            })
            .collect();
        if wl.cluster != cluster {
            continue;
        }
        let (os_name, os_type) = if wl.base == "debian" { ("debian 12.2", "debian") } else { ("alpine 3.18.4", "alpine") };
        let lang = match wl.eco { "jar" => ("app/lib", "jar"), "npm" => ("app/package-lock.json", "npm"), _ => ("app/requirements.txt", "pip") };
        let mut results = vec![json!({"Target": format!("{} ({os_name})", wl.image), "Class": "os-pkgs", "Type": os_type, "Vulnerabilities": os_v})];
        if !app_v.is_empty() {
            results.push(json!({"Target": lang.0, "Class": "lang-pkgs", "Type": lang.1, "Vulnerabilities": app_v}));
        }
        results.push(json!({"Target": format!("Deployment/{}", wl.name), "Class": "config", "Type": "kubernetes", "Misconfigurations": mis}));
        resources.push(json!({"Namespace": wl.ns, "Kind": "Deployment", "Name": wl.name, "Results": results}));
    }
    let doc = json!({"ClusterName": cluster, "CreatedAt": format!("{}T04:00:00Z", WEEKS[week]), "Resources": resources});
    serde_json::to_writer(&mut *w, &doc)?;
    writeln!(w)
}

pub fn write_prowler(w: &mut dyn Write, e: &Estate, week: usize) -> std::io::Result<()> {
    let mut r = Rng::new(0x7072_6f77);
    let mut out = Vec::new();
    for c in &e.clouds {
        for (ci, (check, title, sev, service, rtype, rem)) in PROWLER.iter().enumerate() {
            let applies = matches!((c.kind, ci), (0, 0) | (0, 1) | (1, 2) | (2, 3) | (3, 4) | (4, 5));
            if !applies {
                continue;
            }
            let fail_w1 = r.chance(0.45);
            let still = r.chance(0.8);
            let fail = if week == 1 { fail_w1 } else { fail_w1 && still };
            out.push(json!({
                "message": format!("{} {} {}.", service.to_ascii_uppercase(), c.name, if fail { "fails the check" } else { "passes the check" }),
                "metadata": {"event_code": check, "product": {"name": "Prowler", "vendor_name": "Prowler", "version": "4.5.0"}, "version": "1.4.0"},
                "severity": sev, "status_code": if fail { "FAIL" } else { "PASS" },
                "finding_info": {"uid": format!("prowler-aws-{check}-{}-{}-{}", c.account, c.region, c.name), "title": title, "desc": title},
                "resources": [{"cloud_partition": "aws", "region": c.region, "name": c.name, "type": rtype, "uid": c.arn, "group": {"name": service}}],
                "cloud": {"account": {"uid": c.account, "type": "AWS Account"}, "provider": "aws", "region": c.region},
                "remediation": {"desc": rem}, "risk_details": title, "class_uid": 2004,
                "time_dt": format!("{}T03:00:00", WEEKS[week])
            }));
        }
    }
    serde_json::to_writer(&mut *w, &out)?;
    writeln!(w)
}

pub fn write_semgrep(w: &mut dyn Write, e: &Estate) -> std::io::Result<()> {
    let mut r = Rng::new(0x7365_6d67);
    let mut runs = Vec::new();
    for repo in &e.repos {
        let rules: Vec<_> = SEMGREP.iter().filter(|x| x.4 == repo.ext).collect();
        let mut results = Vec::new();
        for (id, msg, level, _, ext) in &rules {
            for k in 0..r.below(4) {
                results.push(json!({"ruleId": id, "level": level, "message": {"text": msg},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": format!("src/{}/handler_{k}.{ext}", repo.name.replace('-', "_"))}, "region": {"startLine": 20 + r.below(300)}}}]}));
            }
        }
        let rule_defs: Vec<_> = rules
            .iter()
            .map(|(id, msg, level, cwe, _)| json!({"id": id, "name": id, "shortDescription": {"text": msg}, "fullDescription": {"text": msg},
                "defaultConfiguration": {"level": level}, "properties": {"tags": [format!("{cwe}: see cwe.mitre.org"), "security"]}}))
            .collect();
        runs.push(json!({"tool": {"driver": {"name": "Semgrep OSS", "semanticVersion": "1.95.0", "rules": rule_defs}},
            "invocations": [{"executionSuccessful": true, "startTimeUtc": "2026-11-23T01:10:00Z", "endTimeUtc": "2026-11-23T01:14:00Z"}],
            "versionControlProvenance": [{"repositoryUri": repo.url, "branch": "main"}], "results": results}));
    }
    serde_json::to_writer_pretty(&mut *w, &json!({"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": runs}))?;
    writeln!(w)
}

pub fn write_gitleaks(w: &mut dyn Write, e: &Estate) -> std::io::Result<()> {
    let mut r = Rng::new(0x6c65_616b);
    let mut runs = Vec::new();
    for repo in e.repos.iter() {
        if !r.chance(0.3) {
            continue;
        }
        let (rule, desc) = *r.pick(GITLEAKS);
        let results = vec![json!({"ruleId": rule, "message": {"text": format!("{rule} has detected secret for file config/settings.yaml.")},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": "config/settings.yaml"}, "region": {"startLine": 3 + r.below(40)}}}]})];
        runs.push(json!({"tool": {"driver": {"name": "gitleaks", "semanticVersion": "v8.18.2", "rules": [{"id": rule, "name": rule, "shortDescription": {"text": desc}}]}},
            "invocations": [{"executionSuccessful": true, "endTimeUtc": "2026-11-23T01:30:00Z"}],
            "versionControlProvenance": [{"repositoryUri": repo.url}], "results": results}));
    }
    serde_json::to_writer_pretty(&mut *w, &json!({"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": runs}))?;
    writeln!(w)
}

pub fn write_cmdb(w: &mut dyn Write, e: &Estate) -> std::io::Result<()> {
    let mut c = csv::Writer::from_writer(w);
    c.write_record(["name", "kind", "hostname", "fqdn", "ip", "os", "cloud_provider", "account", "region", "cloud_id", "workload", "repo_url", "environment", "business_unit", "owner", "criticality", "internet_facing", "tags"])?;
    for h in &e.hosts {
        let mut tags = vec![h.role.to_string()];
        if h.bu == 0 && h.env == "prod" {
            tags.push("pci".into());
        }
        c.write_record([&h.hostname, "host", &h.hostname, &h.fqdn, &h.ip, h.os, "", "", "", "", "", "", h.env, BUS[h.bu].1, &h.owner, &h.criticality.to_string(), &h.internet.to_string(), &tags.join(";")])?;
    }
    for wl in &e.workloads {
        let name = format!("{}/Deployment/{}", wl.ns, wl.name);
        let wid = format!("{}/{}", wl.cluster, name);
        c.write_record([&name, "k8s_workload", "", "", "", "", "aws", "", "", "", &wid, "", wl.env, BUS[wl.bu].1, &wl.owner, &wl.criticality.to_string(), &wl.internet.to_string(), &format!("image:{}", wl.image)])?;
    }
    for cl in &e.clouds {
        c.write_record([&cl.name, "cloud_resource", "", "", "", "", "aws", cl.account, cl.region, &cl.arn, "", "", cl.env, BUS[cl.bu].1, &cl.owner, &cl.criticality.to_string(), &cl.internet.to_string(), ""])?;
    }
    for r in &e.repos {
        c.write_record([&r.name, "repository", "", "", "", "", "", "", "", "", "", &r.url, "prod", BUS[r.bu].1, &r.owner, "3", "false", ""])?;
    }
    c.flush()
}

pub fn write_controls(w: &mut dyn Write) -> std::io::Result<()> {
    w.write_all(
        b"control_id,name,kind,product,mode,covers,status\n\
ctl-waf-edge,Edge WAF in front of public load balancers,waf,aws_web_application_firewall,block,internet,healthy\n\
ctl-guardduty,GuardDuty threat detection (all accounts),cloud_guardrail,amazon_guardduty,detect,*,healthy\n\
ctl-ngfw-dc,Data-centre firewall cluster,ngfw,SC-7,block,10.0.0.0/8,healthy\n\
ctl-ips-core,Inline IPS on the core segment,ips,SI-4,block,10.0.0.0/12,degraded\n\
ctl-edr-win,EDR on Windows servers,edr,SI-3,block,filter:kind=host and os~windows,healthy\n\
ctl-edr-linux,EDR on Linux servers,edr,SI-3,detect,filter:kind=host and os~ubuntu|debian|red.hat,healthy\n\
ctl-mfa-sso,MFA on single sign-on,mfa,IA-2,block,*,healthy\n\
ctl-mail-gw,E-mail security gateway,email_gateway,SC-44,block,tag:mail,healthy\n\
ctl-scp-guard,Organisation SCP guardrails,cloud_guardrail,AC-3,block,account:111122223333,healthy\n\
ctl-dlp-corp,Endpoint DLP (Corporate IT),dlp,SC-7(10),detect,bu:Corporate IT,disabled\n",
    )
}

/// CISA KEV 2025.08.25, FIRST EPSS scores of the KEV CVEs, the ATT&CK Enterprise techniques and tactics,
/// and the CTID mappings of KEV CVEs, AWS services and NIST 800-53 controls to ATT&CK, with the notices
/// their licences ask for (see sample-data/README.md for sources and licences).
const INTEL_SNAPSHOT: &[(&str, &[u8])] = &[
    ("known_exploited_vulnerabilities.json.gz", include_bytes!("../../sample-data/intel/known_exploited_vulnerabilities.json.gz")),
    ("epss_kev_nvd.csv.gz", include_bytes!("../../sample-data/intel/epss_kev_nvd.csv.gz")),
    ("enterprise-attack-techniques.json.gz", include_bytes!("../../sample-data/intel/enterprise-attack-techniques.json.gz")),
    ("kev-07.28.2025_attack-16.1-enterprise.json.gz", include_bytes!("../../sample-data/intel/kev-07.28.2025_attack-16.1-enterprise.json.gz")),
    ("aws-12.12.2024_attack-16.1-enterprise.json.gz", include_bytes!("../../sample-data/intel/aws-12.12.2024_attack-16.1-enterprise.json.gz")),
    ("nist_800_53-rev5_attack-16.1-enterprise.json.gz", include_bytes!("../../sample-data/intel/nist_800_53-rev5_attack-16.1-enterprise.json.gz")),
    ("MITRE-LICENSE.txt", include_bytes!("../../sample-data/intel/MITRE-LICENSE.txt")),
    ("CTID-LICENSE.txt", include_bytes!("../../sample-data/intel/CTID-LICENSE.txt")),
];

/// The intel snapshot is third-party data, shipped unchanged inside the binary.
pub fn write_intel(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in INTEL_SNAPSHOT {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// Write the whole sample estate below `dir`. Deterministic: the same bytes every time.
pub fn write(dir: &Path) -> anyhow::Result<()> {
    let e = estate();
    let finds = host_findings(&e);
    let mut f = create(&dir.join("cmdb/assets.csv"))?;
    write_cmdb(&mut f, &e)?;
    drop(f);
    let mut f = create(&dir.join("controls/controls.csv"))?;
    write_controls(&mut f)?;
    drop(f);
    write_intel(&dir.join("intel"))?;
    for (wk, day) in WEEKS.iter().enumerate() {
        let base = dir.join("scans").join(day);
        let mut f = create(&base.join("nessus-internal.nessus.gz"))?;
        write_nessus(&mut f, &e, &finds, wk)?;
        drop(f);
        if wk >= 1 {
            for cl in ["prod-eks", "nonprod-eks"] {
                let mut f = create(&base.join(format!("trivy-k8s-{cl}.json.gz")))?;
                write_trivy(&mut f, &e, cl, wk)?;
            }
            let mut f = create(&base.join("prowler-aws.ocsf.json"))?;
            write_prowler(&mut f, &e, wk)?;
        }
        if wk == 2 {
            let mut f = create(&base.join("qualys-payments.xml.gz"))?;
            write_qualys(&mut f, &e, &finds, wk)?;
            let mut f = create(&base.join("semgrep.sarif"))?;
            write_semgrep(&mut f, &e)?;
            let mut f = create(&base.join("gitleaks.sarif"))?;
            write_gitleaks(&mut f, &e)?;
        }
    }
    Ok(())
}
