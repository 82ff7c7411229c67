//! Fix plans: what a fixer does to close a work item. The exact upgrade (package and target version, or
//! the base image to rebuild from), the vendor's solution, the change to an infrastructure-as-code file
//! shown as a diff, the mitigation that deployed controls give while a patch waits, and how the fix will
//! be verified. Built from the store: nothing here is generic advice when the data says more.

use duckdb::{params, Connection};
use std::collections::BTreeMap;

/// Marker that starts the offending lines in a finding's description (written by the importers).
const CODE_MARK: &str = "\n\nCode:\n";
const MAX_CODE_LINES: usize = 60;

/// The offending lines of a misconfiguration, as kept in the description: `NNN| text` per line.
pub fn code_block<'a>(lines: impl Iterator<Item = (i64, &'a str)>) -> Option<String> {
    let mut out = String::new();
    for (n, (no, text)) in lines.enumerate() {
        if n >= MAX_CODE_LINES {
            break;
        }
        let t: String = text.chars().filter(|c| *c != '\r' && *c != '\n').take(300).collect();
        out.push_str(&format!("{no}| {t}\n"));
    }
    (!out.is_empty()).then(|| format!("{CODE_MARK}{out}"))
}

/// The numbered lines kept by `code_block`, if any.
pub fn parse_code(desc: &str) -> Vec<(i64, String)> {
    let Some(i) = desc.find(CODE_MARK) else { return Vec::new() };
    desc[i + CODE_MARK.len()..]
        .lines()
        .filter_map(|l| {
            let (n, t) = l.split_once("| ")?;
            Some((n.trim().parse().ok()?, t.to_string()))
        })
        .collect()
}

/// The description without the code block.
pub fn strip_code(desc: &str) -> &str {
    desc.find(CODE_MARK).map(|i| &desc[..i]).unwrap_or(desc)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Edit {
    /// YAML under a container of a Kubernetes workload: a key with its children.
    Container(&'static [&'static str]),
    /// Attributes (or a nested block) inside a Terraform resource block.
    Terraform(&'static [&'static str]),
    /// A value replaced in the offending Terraform lines.
    TerraformValue { from: &'static str, to: &'static str },
    /// A Dockerfile instruction inserted before the first of `before` (or at the end).
    Dockerfile { line: &'static str, before: &'static [&'static str] },
    /// No safe mechanical change: the instruction only.
    Advice,
}

struct Known {
    ids: &'static [&'static str],
    what: &'static str,
    edit: Edit,
}

/// Rules of Trivy (KSV/DS/AVD ids), Checkov (CKV_), tfsec and KICS whose fix is mechanical.
const KNOWN: &[Known] = &[
    Known { ids: &["KSV001", "CKV_K8S_20"], what: "forbid privilege escalation in the container", edit: Edit::Container(&["securityContext:", "  allowPrivilegeEscalation: false"]) },
    Known { ids: &["KSV003", "KSV106", "CKV_K8S_28", "CKV_K8S_37"], what: "drop every Linux capability the container does not need", edit: Edit::Container(&["securityContext:", "  capabilities:", "    drop: [\"ALL\"]"]) },
    Known { ids: &["KSV012", "CKV_K8S_23"], what: "run the container as a non-root user", edit: Edit::Container(&["securityContext:", "  runAsNonRoot: true"]) },
    Known { ids: &["KSV014", "CKV_K8S_22"], what: "make the container's root file system read-only", edit: Edit::Container(&["securityContext:", "  readOnlyRootFilesystem: true"]) },
    Known { ids: &["KSV017", "CKV_K8S_16"], what: "do not run the container privileged", edit: Edit::Container(&["securityContext:", "  privileged: false"]) },
    Known { ids: &["KSV020", "CKV_K8S_40"], what: "run with a UID above 10000", edit: Edit::Container(&["securityContext:", "  runAsUser: 10001"]) },
    Known { ids: &["KSV021", "KSV116"], what: "run with a non-root GID above 10000", edit: Edit::Container(&["securityContext:", "  runAsGroup: 10001"]) },
    Known { ids: &["KSV030", "KSV104", "CKV_K8S_31"], what: "apply the runtime's default seccomp profile", edit: Edit::Container(&["securityContext:", "  seccompProfile:", "    type: RuntimeDefault"]) },
    Known { ids: &["KSV011", "CKV_K8S_11"], what: "limit the container's CPU", edit: Edit::Container(&["resources:", "  limits:", "    cpu: 500m"]) },
    Known { ids: &["KSV015", "CKV_K8S_10"], what: "request CPU for the container", edit: Edit::Container(&["resources:", "  requests:", "    cpu: 100m"]) },
    Known { ids: &["KSV016", "CKV_K8S_12"], what: "request memory for the container", edit: Edit::Container(&["resources:", "  requests:", "    memory: 128Mi"]) },
    Known { ids: &["KSV018", "CKV_K8S_13"], what: "limit the container's memory", edit: Edit::Container(&["resources:", "  limits:", "    memory: 256Mi"]) },
    Known { ids: &["KSV013", "CKV_K8S_14"], what: "pin the image to a version tag or digest instead of :latest", edit: Edit::Advice },
    Known { ids: &["CKV_AZURE_42", "CKV_AZURE_110", "AZURE-KEYVAULT-NO-PURGE", "AVD-AZU-0016"], what: "make the key vault recoverable (purge protection and soft delete)", edit: Edit::Terraform(&["purge_protection_enabled = true", "soft_delete_retention_days = 90"]) },
    Known { ids: &["CKV_AWS_20", "AWS-S3-NO-PUBLIC-ACCESS-WITH-ACL", "AVD-AWS-0092"], what: "make the bucket ACL private", edit: Edit::Terraform(&["acl = \"private\""]) },
    Known { ids: &["CKV_AWS_21", "AWS-S3-ENABLE-VERSIONING", "AVD-AWS-0090"], what: "enable bucket versioning", edit: Edit::Terraform(&["versioning {", "  enabled = true", "}"]) },
    Known { ids: &["CKV_AWS_19", "CKV_AWS_145", "AWS-S3-ENABLE-BUCKET-ENCRYPTION", "AVD-AWS-0088"], what: "encrypt the bucket at rest", edit: Edit::Terraform(&["server_side_encryption_configuration {", "  rule {", "    apply_server_side_encryption_by_default {", "      sse_algorithm = \"aws:kms\"", "    }", "  }", "}"]) },
    Known { ids: &["CKV_AWS_16", "AWS-RDS-ENCRYPT-INSTANCE-STORAGE-DATA", "AVD-AWS-0080"], what: "encrypt the database storage", edit: Edit::Terraform(&["storage_encrypted = true"]) },
    Known { ids: &["CKV_AWS_17", "AWS-RDS-NO-PUBLIC-DB-ACCESS", "AVD-AWS-0082"], what: "take the database off the internet", edit: Edit::Terraform(&["publicly_accessible = false"]) },
    Known { ids: &["CKV_AWS_79", "AWS-EC2-ENFORCE-HTTP-TOKEN-IMDS", "AVD-AWS-0028"], what: "require IMDSv2 session tokens", edit: Edit::Terraform(&["metadata_options {", "  http_tokens = \"required\"", "}"]) },
    Known { ids: &["CKV_AWS_8", "AWS-EC2-ENABLE-AT-REST-ENCRYPTION", "AVD-AWS-0131"], what: "encrypt the root block device", edit: Edit::Terraform(&["root_block_device {", "  encrypted = true", "}"]) },
    Known { ids: &["CKV_AWS_24", "CKV_AWS_25", "CKV_AWS_260", "AWS-VPC-NO-PUBLIC-INGRESS-SGR", "AWS-EC2-NO-PUBLIC-INGRESS-SGR", "AVD-AWS-0107"], what: "allow ingress from your own networks only, not 0.0.0.0/0", edit: Edit::TerraformValue { from: "0.0.0.0/0", to: "10.0.0.0/8" } },
    Known { ids: &["AWS-VPC-NO-PUBLIC-EGRESS-SGR", "AWS-EC2-NO-PUBLIC-EGRESS-SGR", "AVD-AWS-0104"], what: "allow egress to the destinations the workload needs, not 0.0.0.0/0", edit: Edit::TerraformValue { from: "0.0.0.0/0", to: "10.0.0.0/8" } },
    Known { ids: &["AWS-VPC-NO-EXCESSIVE-PORT-ACCESS", "AWS-EC2-NO-EXCESSIVE-PORT-ACCESS", "AVD-AWS-0102"], what: "open only the ports the service uses", edit: Edit::TerraformValue { from: "\"-1\"", to: "\"tcp\"" } },
    Known { ids: &["DS002", "CKV_DOCKER_3", "CKV_DOCKER_8"], what: "run the image as a non-root user", edit: Edit::Dockerfile { line: "USER 10001:10001", before: &["CMD", "ENTRYPOINT"] } },
    Known { ids: &["DS026", "CKV_DOCKER_2"], what: "declare a health check", edit: Edit::Dockerfile { line: "HEALTHCHECK --interval=30s --timeout=3s CMD [\"/healthcheck\"]", before: &["CMD", "ENTRYPOINT"] } },
    Known { ids: &["DS001", "CKV_DOCKER_7"], what: "pin the base image to a version tag or digest instead of :latest", edit: Edit::Advice },
    Known { ids: &["DS005", "CKV_DOCKER_4"], what: "use COPY instead of ADD for local files", edit: Edit::Advice },
];

/// The rule id in the knowledge's spelling: `AVD-KSV-0014` -> `KSV014`, `AVD-DS-0002` -> `DS002`.
fn norm_id(id: &str) -> String {
    let u = id.trim().to_ascii_uppercase();
    for p in ["KSV", "DS"] {
        if let Some(rest) = u.strip_prefix(&format!("AVD-{p}-")) {
            if let Ok(n) = rest.parse::<u32>() {
                return format!("{p}{n:03}");
            }
        }
    }
    u
}

fn known(id: &str) -> Option<&'static Known> {
    let n = norm_id(id);
    KNOWN.iter().find(|k| k.ids.contains(&n.as_str()))
}

/// `path:line (resource)` as the importers write locations.
fn split_location(loc: &str) -> (String, Option<i64>, Option<String>) {
    let (mut rest, resource) = match (loc.rfind(" ("), loc.ends_with(')')) {
        (Some(i), true) => (&loc[..i], Some(loc[i + 2..loc.len() - 1].to_string())),
        _ => (loc, None),
    };
    let mut line = None;
    if let Some(i) = rest.rfind(':') {
        if let Ok(n) = rest[i + 1..].parse::<i64>() {
            line = Some(n);
            rest = &rest[..i];
        }
    }
    (rest.to_string(), line, resource)
}

fn indent(s: &str) -> usize {
    s.len() - s.trim_start().len()
}

/// A change as `(index into lines, lines removed, lines added)` applied to `code`.
type Hunk = (usize, usize, Vec<String>);

/// Where `edit` goes in a container's YAML lines.
fn container_hunk(code: &[(i64, String)], edit: &[&str]) -> Option<Hunk> {
    let start = code.iter().position(|(_, t)| t.trim_start().starts_with("- ")).unwrap_or(0);
    let first = &code.get(start)?.1;
    let item_indent = indent(first);
    let key_indent = if first.trim_start().starts_with("- ") { item_indent + 2 } else { item_indent };
    // The container's lines: up to the next item or parent.
    let end = code.iter().enumerate().skip(start + 1).find(|(_, (_, t))| !t.trim().is_empty() && indent(t) <= item_indent).map(|(i, _)| i).unwrap_or(code.len());
    let pad = |n: usize, s: &str| format!("{}{}", " ".repeat(n), s);
    let parent = edit[0].trim_end_matches(':');
    let found = (start..end).find(|&i| {
        let t = &code[i].1;
        let body = if i == start { t.trim_start().trim_start_matches("- ") } else { t.trim_start() };
        (i == start || indent(t) == key_indent) && body.starts_with(&format!("{parent}:"))
    });
    match found {
        Some(p) if edit.len() > 1 => {
            // The parent exists: set the leaf (replace it if present, else add it under the parent).
            let leaf = edit.last().expect("non-empty");
            let leaf_key = leaf.trim().split(':').next().unwrap_or("");
            let sub_end = (p + 1..end).find(|&i| !code[i].1.trim().is_empty() && indent(&code[i].1) <= key_indent).unwrap_or(end);
            if let Some(l) = (p + 1..sub_end).find(|&i| code[i].1.trim_start().starts_with(&format!("{leaf_key}:"))) {
                let new = pad(indent(&code[l].1), leaf.trim());
                return (code[l].1 != new).then(|| (l, 1, vec![new]));
            }
            Some((p + 1, 0, edit[1..].iter().map(|e| pad(key_indent, e)).collect()))
        }
        Some(p) => Some((p, 1, vec![pad(key_indent, edit[0])])),
        None => {
            // Before the container's next key at its own level, so no list or map is split.
            let at = (start + 1..end).find(|&i| indent(&code[i].1) == key_indent && !code[i].1.trim().is_empty()).unwrap_or(end);
            Some((at, 0, edit.iter().map(|e| pad(key_indent, e)).collect()))
        }
    }
}

/// Where `edit` goes in a Terraform block's lines.
fn terraform_hunk(code: &[(i64, String)], edit: &[&str]) -> Option<Hunk> {
    let start = code.iter().position(|(_, t)| t.trim_end().ends_with('{'))?;
    let inner = code.get(start + 1).map(|(_, t)| indent(t)).filter(|&n| n > indent(&code[start].1)).unwrap_or(indent(&code[start].1) + 2);
    let pad = |s: &str| format!("{}{}", " ".repeat(inner), s);
    if edit.len() == 1 {
        let attr = edit[0].split('=').next().unwrap_or("").trim();
        if let Some(l) = code.iter().position(|(_, t)| t.trim_start().starts_with(attr) && t.contains('=') && t.split('=').next().map(str::trim) == Some(attr)) {
            let new = pad(edit[0]);
            return (code[l].1.trim() != edit[0].trim()).then(|| (l, 1, vec![new]));
        }
    }
    Some((start + 1, 0, edit.iter().map(|e| pad(e)).collect()))
}

/// Diff headers: a file in a repository, or a live resource's manifest (`StatefulSet/vault`).
fn headers(file: &str) -> String {
    let live = file.split('/').next().is_some_and(|k| k.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && k.chars().all(|c| c.is_ascii_alphanumeric()))
        && !file.rsplit('/').next().unwrap_or("").contains('.')
        && file.contains('/');
    if live {
        format!("--- {file} (live manifest)\n+++ {file} (as it should be)\n")
    } else {
        format!("--- a/{file}\n+++ b/{file}\n")
    }
}

fn unified(file: &str, resource: Option<&str>, code: &[(i64, String)], h: &Hunk) -> String {
    let (at, removed, added) = h;
    let lo = at.saturating_sub(3);
    let hi = (at + removed + 3).min(code.len());
    let first = code.get(lo).map(|c| c.0).unwrap_or(1);
    let old_n = hi - lo;
    let new_n = old_n - removed + added.len();
    let mut out = format!("{}@@ -{first},{old_n} +{first},{new_n} @@{}\n", headers(file), resource.map(|r| format!(" {r}")).unwrap_or_default());
    for (i, (_, t)) in code.iter().enumerate().take(hi).skip(lo) {
        if i >= *at && i < at + removed {
            out.push_str(&format!("-{t}\n"));
        } else {
            if i == *at || (i == at + removed && *removed > 0) {
                for a in added {
                    out.push_str(&format!("+{a}\n"));
                }
            }
            out.push_str(&format!(" {t}\n"));
        }
        if *removed > 0 && i + 1 == at + removed && i + 1 >= hi {
            for a in added {
                out.push_str(&format!("+{a}\n"));
            }
        }
    }
    if *at >= hi {
        for a in added {
            out.push_str(&format!("+{a}\n"));
        }
    }
    out
}

/// The change a misconfiguration needs: a sentence and, when the rule's fix is mechanical, a diff against
/// the offending lines (or, when the report carries none, the lines to add and where).
pub fn iac_change(vuln_id: &str, location: Option<&str>, description: Option<&str>, solution: Option<&str>) -> Option<(String, Option<String>)> {
    let k = known(vuln_id)?;
    let (file, line, resource) = split_location(location.unwrap_or(""));
    let code = description.map(parse_code).unwrap_or_default();
    let file = if file.is_empty() { "(file not named by the scanner)".to_string() } else { file };
    let at = match (line, &resource) {
        (Some(l), Some(r)) => format!("{file} line {l}, {r}"),
        (Some(l), None) => format!("{file} line {l}"),
        (None, Some(r)) => format!("{file}, {r}"),
        (None, None) => file.clone(),
    };
    let sentence = format!("{}: {} in {at}", norm_id(vuln_id), k.what);
    let add_only = |lines: &[&str], how: &str| -> String {
        let mut d = format!("{}@@ {how} (the report carries no code) @@\n", headers(&file));
        for l in lines {
            d.push_str(&format!("+{l}\n"));
        }
        d
    };
    let diff = match k.edit {
        Edit::Advice => None,
        Edit::Container(e) => Some(match (!code.is_empty()).then(|| container_hunk(&code, e)).flatten() {
            Some(h) => unified(&file, resource.as_deref(), &code, &h),
            None => add_only(e, &format!("in the container spec{}", resource.as_deref().map(|r| format!(" of {r}")).unwrap_or_default())),
        }),
        Edit::Terraform(e) => Some(match (!code.is_empty()).then(|| terraform_hunk(&code, e)).flatten() {
            Some(h) => unified(&file, resource.as_deref(), &code, &h),
            None => add_only(e, &format!("inside the block{}{}", resource.as_deref().map(|r| format!(" {r}")).unwrap_or_default(), line.map(|l| format!(" at line {l}")).unwrap_or_default())),
        }),
        Edit::TerraformValue { from, to } => {
            let hit = code.iter().position(|(_, t)| t.contains(from));
            match hit {
                Some(i) => Some(unified(&file, resource.as_deref(), &code, &(i, 1, vec![code[i].1.replace(from, to)]))),
                None => Some(format!(
                    "{}@@ line {} (the report carries no code) @@\n-  ... {from} ...\n+  ... {to} ...   (your own range)\n",
                    headers(&file),
                    line.map(|l| l.to_string()).unwrap_or_else(|| "?".into())
                )),
            }
        }
        Edit::Dockerfile { line: l, before } => {
            let hit = code.iter().position(|(_, t)| before.iter().any(|b| t.trim_start().to_ascii_uppercase().starts_with(b)));
            match hit {
                Some(i) => Some(unified(&file, None, &code, &(i, 0, vec![l.to_string()]))),
                None => Some(add_only(&[l], &format!("before the first {}, or at the end", before.join(" or ")))),
            }
        }
    };
    let mut s = sentence;
    if diff.is_none() {
        if let Some(sol) = solution.filter(|s| !s.trim().is_empty()) {
            s.push_str(&format!(" ({})", sol.trim()));
        }
    }
    Some((s, diff))
}

/// The base image to rebuild from, from the OS the scanner saw (`debian 11.6` -> `debian:11`).
fn base_image(os: &str) -> Option<String> {
    let mut it = os.split_whitespace();
    let distro = it.next()?.to_ascii_lowercase();
    let ver = it.next()?;
    let parts: Vec<&str> = ver.split('.').collect();
    let tag = match distro.as_str() {
        "alpine" | "ubuntu" | "amazon" | "photon" => parts.iter().take(2).cloned().collect::<Vec<_>>().join("."),
        _ => parts[0].to_string(),
    };
    let name = match distro.as_str() {
        "redhat" | "rhel" => "registry.access.redhat.com/ubi".to_string() + &tag,
        "amazon" => "amazonlinux".into(),
        d => d.to_string(),
    };
    Some(if distro == "redhat" || distro == "rhel" { name } else { format!("{name}:{tag}") })
}

/// A fixer's plan for one work item, as titled sections of lines.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FixPlan {
    pub sections: Vec<(String, Vec<String>)>,
}

impl FixPlan {
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (h, lines) in &self.sections {
            out.push_str(h);
            out.push('\n');
            for l in lines {
                for part in l.lines() {
                    out.push_str("  ");
                    out.push_str(part);
                    out.push('\n');
                }
            }
            out.push('\n');
        }
        out.trim_end().to_string()
    }
}

struct F {
    fix_kind: Option<String>,
    fix_target: Option<String>,
    package: Option<String>,
    installed: Option<String>,
    fixed: Option<String>,
    solution: Option<String>,
    asset: String,
    os: Option<String>,
    location: Option<String>,
    vuln_id: String,
    title: String,
    description: Option<String>,
    cves: Vec<String>,
    cwes: Vec<String>,
    sources: Vec<String>,
    open: bool,
}

fn split31(s: Option<String>) -> Vec<String> {
    s.map(|s| s.split('\u{1f}').filter(|x| !x.is_empty()).map(String::from).collect()).unwrap_or_default()
}

/// Numeric components of a version, for ordering (`1.10.2` after `1.9`).
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap_or(u64::MAX)).collect()
}

fn list(v: &[String], n: usize) -> String {
    let mut s = v.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if v.len() > n {
        s.push_str(&format!(" and {} more", v.len() - n));
    }
    s
}

/// Build the plan of a work item from its findings (the open ones; all of them once none is open).
pub fn for_work_item(c: &Connection, id: i64) -> anyhow::Result<FixPlan> {
    let mut st = c.prepare(
        "SELECT f.fix_kind, f.fix_target, f.package, f.installed_version, f.fixed_version, f.solution, f.asset_name, a.os,
                f.location, f.vuln_id, f.title, f.description, array_to_string(f.cves, chr(31)), array_to_string(f.cwes, chr(31)), array_to_string(f.sources, chr(31)), f.status IN ('open', 'reopened', 'mitigated')
         FROM work_item_findings wf JOIN findings f USING (finding_id) LEFT JOIN assets a ON a.asset_id = f.asset_id
         WHERE wf.work_item_id = ? ORDER BY coalesce(f.risk_score, 0) DESC, f.finding_id",
    )?;
    let all: Vec<F> = st
        .query_map(params![id], |r| {
            Ok(F {
                fix_kind: r.get(0)?,
                fix_target: r.get(1)?,
                package: r.get(2)?,
                installed: r.get(3)?,
                fixed: r.get(4)?,
                solution: r.get(5)?,
                asset: r.get(6)?,
                os: r.get(7)?,
                location: r.get(8)?,
                vuln_id: r.get(9)?,
                title: r.get(10)?,
                description: r.get(11)?,
                cves: split31(r.get(12)?),
                cwes: split31(r.get(13)?),
                sources: split31(r.get(14)?),
                open: r.get(15)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if all.is_empty() {
        anyhow::bail!("work item #{id} holds no findings");
    }
    let any_open = all.iter().any(|f| f.open);
    let fs: Vec<&F> = all.iter().filter(|f| f.open || !any_open).collect();
    let mut plan = FixPlan::default();

    // What to change, per kind of fix.
    let mut by_kind: BTreeMap<String, Vec<&F>> = BTreeMap::new();
    for f in &fs {
        by_kind.entry(f.fix_kind.clone().unwrap_or_else(|| "unknown".into())).or_default().push(f);
    }
    let mut fix = Vec::new();
    for (kind, v) in &by_kind {
        let assets = {
            let mut a: Vec<String> = v.iter().map(|f| f.asset.clone()).collect();
            a.sort();
            a.dedup();
            a
        };
        let ids = {
            let mut c: Vec<String> = v.iter().flat_map(|f| if f.cves.is_empty() { vec![f.vuln_id.clone()] } else { f.cves.clone() }).collect();
            c.sort();
            c.dedup();
            c
        };
        match kind.as_str() {
            "package_upgrade" => {
                let mut pk: BTreeMap<String, Vec<&F>> = BTreeMap::new();
                for f in v {
                    pk.entry(f.package.clone().unwrap_or_default()).or_default().push(f);
                }
                for (p, fv) in pk {
                    let target = fv.iter().filter_map(|f| f.fix_target.clone()).max_by_key(|v| version_key(v));
                    let mut installed: Vec<String> = fv.iter().filter_map(|f| f.installed.clone()).collect();
                    installed.sort();
                    installed.dedup();
                    let mut on: Vec<String> = fv.iter().map(|f| f.asset.clone()).collect();
                    on.sort();
                    on.dedup();
                    fix.push(format!(
                        "Upgrade {p} from {} to {} (the highest fixed version its findings need) on {}",
                        if installed.is_empty() { "the installed version".into() } else { list(&installed, 4) },
                        target.unwrap_or_else(|| "a fixed version".into()),
                        list(&on, 6)
                    ));
                }
                fix.push(format!("Closes {}", list(&ids, 8)));
            }
            "base_image" => {
                let mut by_img: BTreeMap<(String, Option<String>), Vec<&F>> = BTreeMap::new();
                for f in v {
                    by_img.entry((f.asset.clone(), f.os.clone())).or_default().push(f);
                }
                for ((img, os), fv) in by_img.iter().take(6) {
                    let base = os.as_deref().and_then(base_image);
                    fix.push(format!(
                        "Rebuild {img} from {}{}",
                        base.as_deref().map(|b| format!("the current {b} image (pulled fresh: `docker build --pull --no-cache`)")).unwrap_or_else(|| "a patched base image".into()),
                        os.as_deref().map(|o| format!("; it runs {o}")).unwrap_or_default()
                    ));
                    let mut pk: Vec<String> = fv
                        .iter()
                        .filter_map(|f| Some(format!("{} {} -> {}", f.package.as_deref()?, f.installed.as_deref().unwrap_or("?"), f.fixed.as_deref().unwrap_or("?"))))
                        .collect();
                    pk.sort();
                    pk.dedup();
                    fix.push(format!("  OS packages it moves: {}", list(&pk, 6)));
                }
                if by_img.len() > 6 {
                    fix.push(format!("and {} more images", by_img.len() - 6));
                }
                fix.push(format!("Closes {}", list(&ids, 8)));
            }
            "no_fix" => {
                let mut pk: Vec<String> = v.iter().filter_map(|f| f.package.clone()).collect();
                pk.sort();
                pk.dedup();
                fix.push(format!(
                    "No fixed version of {} is published yet: watch for one; until then rely on the mitigations below, or remove the package where it is not needed ({} assets)",
                    list(&pk, 4),
                    assets.len()
                ));
            }
            "vendor_patch" => {
                let mut sols: BTreeMap<String, usize> = BTreeMap::new();
                for f in v {
                    let s = f.solution.as_deref().map(str::trim).filter(|s| !s.is_empty()).unwrap_or(&f.title);
                    *sols.entry(s.chars().take(400).collect()).or_default() += 1;
                }
                for (s, n) in sols.iter().take(3) {
                    fix.push(format!("{s} ({n} finding{})", if *n == 1 { "" } else { "s" }));
                }
                fix.push(format!("On {} ({})", list(&assets, 6), list(&ids, 6)));
            }
            "iac_rule" | "config_change" => {
                for f in v.iter().take(8) {
                    match iac_change(&f.vuln_id, f.location.as_deref(), f.description.as_deref(), f.solution.as_deref()) {
                        Some((s, d)) => {
                            fix.push(s);
                            if let Some(d) = d {
                                fix.push(d.trim_end().to_string());
                            }
                        }
                        None => fix.push(format!(
                            "{}: {} in {}{}",
                            f.vuln_id,
                            f.title,
                            f.location.as_deref().unwrap_or(&f.asset),
                            f.solution.as_deref().map(|s| format!(": {}", s.trim())).unwrap_or_default()
                        )),
                    }
                }
                if v.len() > 8 {
                    fix.push(format!("and {} more", v.len() - 8));
                }
            }
            "secret_rotation" => {
                for f in v.iter().take(6) {
                    fix.push(format!("Revoke and rotate the {} found in {}", f.title, f.location.as_deref().unwrap_or(&f.asset)));
                }
                fix.push("Then remove it from the file and the repository history, and load it from a secret store at run time".into());
            }
            "code_fix" => {
                for f in v.iter().take(6) {
                    fix.push(format!(
                        "{} {}{} at {}",
                        f.vuln_id,
                        f.title,
                        if f.cwes.is_empty() { String::new() } else { format!(" ({})", f.cwes.join(", ")) },
                        f.location.as_deref().unwrap_or(&f.asset)
                    ));
                }
            }
            _ => {
                for f in v.iter().take(6) {
                    fix.push(format!("{}: {} on {}", f.vuln_id, f.title, f.asset));
                }
            }
        }
    }
    plan.sections.push(("Fix".into(), fix));

    // Until the fix lands: the controls that protect against the techniques these findings expose.
    let mut mit = Vec::new();
    let mut st = c.prepare(
        "WITH wf AS (SELECT f.finding_id, f.asset_id FROM work_item_findings w JOIN findings f USING (finding_id)
                     WHERE w.work_item_id = ? AND f.status IN ('open', 'reopened', 'mitigated')),
              tech AS (SELECT e.technique_id, count(DISTINCT e.finding_id) AS findings, list(DISTINCT wf.asset_id) AS assets
                       FROM exposure_techniques e JOIN wf USING (finding_id) GROUP BY e.technique_id),
              prot AS (SELECT t.technique_id, ct.control_id, c.name, c.kind, c.mode, c.status,
                              count(DISTINCT ca.asset_id) FILTER (WHERE list_contains(t.assets, ca.asset_id)) AS on_assets
                       FROM tech t JOIN control_techniques ct ON ct.technique_id = t.technique_id AND ct.category = 'protect'
                       JOIN controls c ON c.control_id = ct.control_id LEFT JOIN control_assets ca ON ca.control_id = c.control_id
                       GROUP BY ALL)
         SELECT t.technique_id, coalesce(a.name, ''), t.findings, len(t.assets),
                array_to_string(list(p.kind || ' ' || coalesce(p.name, p.control_id) || ' (' || p.mode || ', ' || p.status || ') on ' || p.on_assets || ' of ' || len(t.assets) || ' assets'
                     ORDER BY p.on_assets DESC) FILTER (WHERE p.on_assets > 0), chr(31)),
                array_to_string(list(DISTINCT p.kind || ' ' || coalesce(p.name, p.control_id)) FILTER (WHERE p.on_assets = 0), chr(31))
         FROM tech t LEFT JOIN attack_techniques a ON a.technique_id = t.technique_id LEFT JOIN prot p ON p.technique_id = t.technique_id
         GROUP BY ALL ORDER BY t.findings DESC, t.technique_id LIMIT 6",
    )?;
    let rows = st
        .query_map(params![id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                split31(r.get(4)?),
                split31(r.get(5)?),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (t, name, n, na, on, off) in &rows {
        let head = format!("{t}{}", if name.is_empty() { String::new() } else { format!(" {name}") });
        if on.is_empty() {
            mit.push(format!("{head} ({n} findings on {na} assets): no deployed control protects against it"));
        } else {
            mit.push(format!("{head} ({n} findings): protected by {}", list(on, 3)));
        }
        if !off.is_empty() {
            mit.push(format!("  could protect, not deployed on these assets: {}", list(off, 3)));
        }
    }
    if rows.is_empty() {
        mit.push("No attacker technique is mapped to these findings (no CTID or CAPEC mapping): control coverage is unknown".into());
    }
    plan.sections.push(("Until the fix lands".into(), mit));

    // How the fix is confirmed.
    let mut tools: Vec<String> = fs.iter().flat_map(|f| f.sources.clone()).collect();
    tools.sort();
    tools.dedup();
    let mut assets: Vec<String> = fs.iter().map(|f| f.asset.clone()).collect();
    assets.sort();
    assets.dedup();
    let open = all.iter().filter(|f| f.open).count();
    plan.sections.push((
        "Verify".into(),
        vec![format!(
            "Rescan {} with {}: the work item turns verified when no scan sees its findings ({open} of {} still open)",
            list(&assets, 6),
            list(&tools, 4),
            all.len()
        )],
    ));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_normalise() {
        assert_eq!(norm_id("AVD-KSV-0014"), "KSV014");
        assert_eq!(norm_id("avd-ds-0002"), "DS002");
        assert_eq!(norm_id("CKV_AZURE_42"), "CKV_AZURE_42");
        assert!(known("aws-s3-enable-versioning").is_some());
    }

    #[test]
    fn locations_split() {
        assert_eq!(split_location("k8s/vault.yaml:224 (StatefulSet/vault)"), ("k8s/vault.yaml".into(), Some(224), Some("StatefulSet/vault".into())));
        assert_eq!(split_location("Dockerfile"), ("Dockerfile".into(), None, None));
    }

    #[test]
    fn terraform_attribute_is_replaced_or_added() {
        let code: Vec<(i64, String)> = vec![
            (10, "resource \"azurerm_key_vault\" \"main\" {".into()),
            (11, "    name = \"kv\"".into()),
            (12, "    purge_protection_enabled = false".into()),
            (13, "}".into()),
        ];
        let h = terraform_hunk(&code, &["purge_protection_enabled = true"]).unwrap();
        assert_eq!(h, (2, 1, vec!["    purge_protection_enabled = true".to_string()]));
        let d = unified("main.tf", None, &code, &h);
        assert!(d.contains("-    purge_protection_enabled = false\n+    purge_protection_enabled = true\n"), "{d}");
        let h = terraform_hunk(&code[..2], &["acl = \"private\""]).unwrap();
        assert_eq!(h, (1, 0, vec!["    acl = \"private\"".to_string()]));
    }

    #[test]
    fn container_key_goes_before_the_next_sibling() {
        let code: Vec<(i64, String)> = vec![
            (224, "    - args:".into()),
            (225, "        - run".into()),
            (226, "      command:".into()),
            (227, "        - /bin/sh".into()),
        ];
        let h = container_hunk(&code, &["securityContext:", "  readOnlyRootFilesystem: true"]).unwrap();
        assert_eq!(h, (2, 0, vec!["      securityContext:".to_string(), "        readOnlyRootFilesystem: true".to_string()]));
        let with: Vec<(i64, String)> = vec![
            (1, "    - name: app".into()),
            (2, "      securityContext:".into()),
            (3, "        readOnlyRootFilesystem: false".into()),
            (4, "      image: x".into()),
        ];
        let h = container_hunk(&with, &["securityContext:", "  readOnlyRootFilesystem: true"]).unwrap();
        assert_eq!(h, (2, 1, vec!["        readOnlyRootFilesystem: true".to_string()]));
    }

    #[test]
    fn code_round_trips_through_the_description() {
        let d = format!("Message{}", code_block([(7, "FROM x"), (8, "CMD y")].into_iter()).unwrap());
        assert_eq!(parse_code(&d), vec![(7, "FROM x".to_string()), (8, "CMD y".to_string())]);
        assert_eq!(strip_code(&d), "Message");
        let (s, diff) = iac_change("DS002", Some("Dockerfile"), Some(&d), None).unwrap();
        assert!(s.starts_with("DS002: run the image as a non-root user in Dockerfile"), "{s}");
        assert!(diff.unwrap().contains(" FROM x\n+USER 10001:10001\n CMD y\n"));
    }
}
