//! Real vulnerabilities, checks and rules the generated estates are built from.

/// A network-scanner plugin: (Nessus plugin id, Qualys QID, name, severity 0-4, CVSS, CVEs, applies to, solution).
pub struct Plugin {
    pub id: u32,
    pub qid: u32,
    pub name: &'static str,
    pub sev: u8,
    pub cvss: f64,
    pub cves: &'static [&'static str],
    pub os: &'static str,
    pub port: u16,
    pub solution: &'static str,
    pub exploit: bool,
}

macro_rules! p {
    ($id:expr, $qid:expr, $name:expr, $sev:expr, $cvss:expr, [$($c:expr),*], $os:expr, $port:expr, $sol:expr, $x:expr) => {
        Plugin { id: $id, qid: $qid, name: $name, sev: $sev, cvss: $cvss, cves: &[$($c),*], os: $os, port: $port, solution: $sol, exploit: $x }
    };
}

/// `os`: "win", "linux", "any", "dc" (domain controllers), "mail" (Exchange), "web" (web servers), "db".
pub const PLUGINS: &[Plugin] = &[
    p!(97833, 91345, "MS17-010: Security Update for Microsoft Windows SMB Server (ETERNALBLUE)", 4, 9.3, ["CVE-2017-0143", "CVE-2017-0144", "CVE-2017-0145", "CVE-2017-0146", "CVE-2017-0148"], "win", 445, "Apply the patches listed in Microsoft Security Bulletin MS17-010.", true),
    p!(125313, 91534, "Microsoft RDP RCE (BlueKeep) (uncredentialed check)", 4, 9.8, ["CVE-2019-0708"], "win", 3389, "Apply the May 2019 security updates or enable Network Level Authentication.", true),
    p!(140657, 91680, "Netlogon Elevation of Privilege (Zerologon)", 4, 10.0, ["CVE-2020-1472"], "dc", 445, "Apply the August 2020 Netlogon security update and enforce secure RPC.", true),
    p!(151440, 91785, "Windows Print Spooler Remote Code Execution (PrintNightmare)", 3, 8.8, ["CVE-2021-34527"], "win", 445, "Apply the July 2021 out-of-band update and disable the Print Spooler where not needed.", true),
    p!(152658, 50114, "Microsoft Exchange Server ProxyShell", 4, 9.8, ["CVE-2021-34473", "CVE-2021-34523", "CVE-2021-31207"], "mail", 443, "Apply the cumulative update for Exchange Server from July 2021.", true),
    p!(73412, 42430, "OpenSSL Heartbeat Information Disclosure (Heartbleed)", 3, 7.5, ["CVE-2014-0160"], "linux", 443, "Upgrade to OpenSSL 1.0.1g or later.", true),
    p!(77823, 122693, "Bash Remote Code Execution (Shellshock)", 4, 9.8, ["CVE-2014-6271"], "linux", 80, "Update Bash.", true),
    p!(156032, 730297, "Apache Log4j < 2.15.0 Remote Code Execution (Log4Shell)", 4, 10.0, ["CVE-2021-44228"], "web", 8080, "Upgrade to Apache Log4j version 2.17.1 or later.", true),
    p!(156860, 376157, "Polkit pkexec Local Privilege Escalation (PwnKit)", 3, 7.8, ["CVE-2021-4034"], "linux", 0, "Update polkit to a version that fixes CVE-2021-4034.", true),
    p!(158800, 376470, "Linux Kernel Dirty Pipe Privilege Escalation", 3, 7.8, ["CVE-2022-0847"], "linux", 0, "Upgrade the kernel to 5.16.11, 5.15.25, 5.10.102 or later.", true),
    p!(145463, 374891, "sudo Heap-Based Buffer Overflow (Baron Samedit)", 3, 7.8, ["CVE-2021-3156"], "linux", 0, "Update sudo to 1.9.5p2 or later.", true),
    p!(153884, 150373, "Apache HTTP Server 2.4.49 Path Traversal", 3, 7.5, ["CVE-2021-41773"], "web", 443, "Upgrade to Apache HTTP Server 2.4.51 or later.", true),
    p!(201194, 42046, "OpenSSH < 9.8 Signal Handler Race Condition (regreSSHion)", 3, 8.1, ["CVE-2024-6387"], "linux", 22, "Upgrade to OpenSSH 9.8 or later.", false),
    p!(187315, 38909, "SSH Terrapin Prefix Truncation Weakness", 2, 5.9, ["CVE-2023-48795"], "any", 22, "Upgrade SSH implementations to versions with strict key exchange.", false),
    p!(42873, 38657, "SSL Medium Strength Cipher Suites Supported (SWEET32)", 3, 7.5, ["CVE-2016-2183"], "any", 443, "Reconfigure the service to avoid medium strength ciphers.", false),
    p!(200162, 730987, "PHP < 8.1.29 CGI Argument Injection", 4, 9.8, ["CVE-2024-4577"], "web", 80, "Upgrade PHP to 8.1.29, 8.2.20, 8.3.8 or later.", true),
    p!(185580, 19999, "PostgreSQL 13.x < 13.13 Multiple Vulnerabilities", 3, 8.8, ["CVE-2023-5869"], "db", 5432, "Upgrade to PostgreSQL 13.13 or later.", false),
    p!(183961, 19998, "MySQL 5.7.x < 5.7.44 Multiple Vulnerabilities", 2, 6.5, ["CVE-2023-22084"], "db", 3306, "Upgrade to MySQL 5.7.44 or later.", false),
    p!(57608, 90043, "SMB Signing not required", 2, 5.3, [], "win", 445, "Enforce message signing in the host's configuration.", false),
    p!(51192, 38173, "SSL Certificate Cannot Be Trusted", 2, 6.5, [], "any", 443, "Purchase or generate a proper SSL certificate for this service.", false),
    p!(104743, 38628, "TLS Version 1.0 Protocol Detection", 2, 6.5, [], "any", 443, "Enable support for TLS 1.2 and 1.3, and disable support for TLS 1.0.", false),
    p!(90317, 38739, "SSH Weak Algorithms Supported", 2, 4.3, [], "linux", 22, "Remove the weak ciphers from the SSH server configuration.", false),
    p!(10114, 82003, "ICMP Timestamp Request Remote Date Disclosure", 1, 2.1, ["CVE-1999-0524"], "any", 0, "Filter out the ICMP timestamp requests (13) and replies (14).", false),
    p!(108797, 105484, "Unsupported Windows OS (remote)", 4, 10.0, [], "win", 0, "Upgrade to a version of Windows that is currently supported.", false),
    p!(19506, 45038, "Nessus Scan Information", 0, 0.0, [], "any", 0, "", false),
    p!(11936, 45017, "OS Identification", 0, 0.0, [], "any", 0, "", false),
    p!(22964, 82023, "Service Detection", 0, 0.0, [], "any", 0, "", false),
];

/// A package vulnerability: (CVE, package, installed, fixed, severity, CVSS, ecosystem, title).
pub struct PkgVuln {
    pub cve: &'static str,
    pub pkg: &'static str,
    pub installed: &'static str,
    pub fixed: &'static str,
    pub sev: &'static str,
    pub cvss: f64,
    pub eco: &'static str,
    pub title: &'static str,
    pub cwe: &'static str,
}

macro_rules! v {
    ($cve:expr, $pkg:expr, $inst:expr, $fix:expr, $sev:expr, $cvss:expr, $eco:expr, $title:expr, $cwe:expr) => {
        PkgVuln { cve: $cve, pkg: $pkg, installed: $inst, fixed: $fix, sev: $sev, cvss: $cvss, eco: $eco, title: $title, cwe: $cwe }
    };
}

/// `eco`: "debian" (OS packages of the debian-12 base image), "alpine", "jar", "npm", "pip".
pub const PKG_VULNS: &[PkgVuln] = &[
    v!("CVE-2023-4911", "libc6", "2.36-9+deb12u1", "2.36-9+deb12u3", "HIGH", 7.8, "debian", "glibc: buffer overflow in ld.so leading to privilege escalation (Looney Tunables)", "CWE-787"),
    v!("CVE-2023-38545", "libcurl4", "7.88.1-10+deb12u1", "7.88.1-10+deb12u4", "CRITICAL", 9.8, "debian", "curl: heap based buffer overflow in the SOCKS5 proxy handshake", "CWE-787"),
    v!("CVE-2023-44487", "libnghttp2-14", "1.52.0-1", "1.52.0-1+deb12u1", "HIGH", 7.5, "debian", "HTTP/2: Rapid Reset denial of service", "CWE-400"),
    v!("CVE-2024-6387", "openssh-client", "1:9.2p1-2+deb12u1", "1:9.2p1-2+deb12u3", "HIGH", 8.1, "debian", "openssh: regreSSHion signal handler race condition", "CWE-364"),
    v!("CVE-2023-2650", "libssl3", "3.0.9-1", "3.0.11-1~deb12u1", "MEDIUM", 6.5, "debian", "openssl: possible DoS translating ASN.1 object identifiers", "CWE-770"),
    v!("CVE-2023-5678", "libssl3", "3.0.9-1", "3.0.13-1~deb12u1", "MEDIUM", 5.3, "debian", "openssl: excessive time spent in DH check / generation", "CWE-754"),
    v!("CVE-2023-45853", "zlib1g", "1:1.2.13.dfsg-1", "", "CRITICAL", 9.8, "debian", "zlib: integer overflow in zipOpenNewFileInZip4_6", "CWE-190"),
    v!("CVE-2023-31484", "perl-base", "5.36.0-7", "5.36.0-7+deb12u1", "HIGH", 8.1, "debian", "perl: CPAN.pm does not verify TLS certificates", "CWE-295"),
    v!("CVE-2023-29383", "passwd", "1:4.13+dfsg1-1", "", "LOW", 3.3, "debian", "shadow: improper input validation in chfn", "CWE-74"),
    v!("CVE-2011-3374", "apt", "2.6.1", "", "LOW", 3.7, "debian", "apt: does not correctly validate gpg keys", "CWE-347"),
    v!("CVE-2022-4899", "libzstd1", "1.5.4+dfsg2-5", "", "HIGH", 7.5, "debian", "zstd: mysql buffer overread", "CWE-400"),
    v!("CVE-2022-48174", "busybox", "1.35.0-r29", "1.35.0-r31", "CRITICAL", 9.8, "alpine", "busybox: stack overflow in ash", "CWE-787"),
    v!("CVE-2023-5363", "libssl3", "3.0.8-r0", "3.0.12-r0", "HIGH", 7.5, "alpine", "openssl: incorrect cipher key and IV length processing", "CWE-325"),
    v!("CVE-2023-42363", "busybox", "1.35.0-r29", "1.36.1-r6", "MEDIUM", 5.5, "alpine", "busybox: use-after-free in awk", "CWE-416"),
    v!("CVE-2021-44228", "org.apache.logging.log4j:log4j-core", "2.14.1", "2.15.0", "CRITICAL", 10.0, "jar", "log4j-core: Remote code execution in Log4j 2.x when logs contain an attacker-controlled string value", "CWE-502"),
    v!("CVE-2021-45046", "org.apache.logging.log4j:log4j-core", "2.14.1", "2.16.0", "CRITICAL", 9.0, "jar", "log4j-core: DoS in log4j 2.x with thread context message pattern and context lookup pattern", "CWE-917"),
    v!("CVE-2022-22965", "org.springframework:spring-beans", "5.3.17", "5.3.18", "CRITICAL", 9.8, "jar", "spring-framework: RCE via Data Binding on JDK 9+ (Spring4Shell)", "CWE-94"),
    v!("CVE-2022-42889", "org.apache.commons:commons-text", "1.9", "1.10.0", "CRITICAL", 9.8, "jar", "apache-commons-text: variable interpolation RCE (Text4Shell)", "CWE-94"),
    v!("CVE-2020-36518", "com.fasterxml.jackson.core:jackson-databind", "2.12.5", "2.12.6.1", "HIGH", 7.5, "jar", "jackson-databind: denial of service via a large depth of nested objects", "CWE-787"),
    v!("CVE-2023-34034", "org.springframework.security:spring-security-config", "5.8.4", "5.8.5", "CRITICAL", 9.1, "jar", "spring-security: access control bypass with ** pattern in WebFlux", "CWE-281"),
    v!("CVE-2022-24999", "qs", "6.5.2", "6.5.3", "HIGH", 7.5, "npm", "express: \"qs\" prototype poisoning causes the hang of the node process", "CWE-1321"),
    v!("CVE-2021-23337", "lodash", "4.17.20", "4.17.21", "HIGH", 7.2, "npm", "nodejs-lodash: command injection via template", "CWE-77"),
    v!("CVE-2022-25883", "semver", "7.3.7", "7.5.2", "MEDIUM", 5.3, "npm", "nodejs-semver: Regular expression denial of service", "CWE-1333"),
    v!("CVE-2023-26136", "tough-cookie", "4.0.0", "4.1.3", "MEDIUM", 6.5, "npm", "tough-cookie: prototype pollution in cookie memstore", "CWE-1321"),
    v!("CVE-2023-32681", "requests", "2.28.1", "2.31.0", "MEDIUM", 6.1, "pip", "python-requests: Unintended leak of Proxy-Authorization header", "CWE-200"),
    v!("CVE-2022-40897", "setuptools", "58.1.0", "65.5.1", "MEDIUM", 5.9, "pip", "pypa-setuptools: Regular Expression Denial of Service (ReDoS) in package_index.py", "CWE-1333"),
    v!("CVE-2023-30861", "flask", "2.2.2", "2.2.5", "HIGH", 7.5, "pip", "flask: possible disclosure of permanent session cookie due to missing Vary: Cookie header", "CWE-539"),
    v!("CVE-2024-35195", "requests", "2.28.1", "2.32.0", "MEDIUM", 5.6, "pip", "requests: subsequent requests to the same host ignore cert verification", "CWE-670"),
];

/// Kubernetes misconfigurations (Trivy KSV checks): (id, avd id, title, severity, resolution).
pub const KSV: &[(&str, &str, &str, &str, &str)] = &[
    ("KSV001", "AVD-KSV-0001", "Can elevate its own privileges", "MEDIUM", "Set 'set containers[].securityContext.allowPrivilegeEscalation' to 'false'."),
    ("KSV012", "AVD-KSV-0012", "Runs as root user", "MEDIUM", "Set 'containers[].securityContext.runAsNonRoot' to true."),
    ("KSV014", "AVD-KSV-0014", "Root file system is not read-only", "HIGH", "Change 'containers[].securityContext.readOnlyRootFilesystem' to 'true'."),
    ("KSV017", "AVD-KSV-0017", "Privileged container", "HIGH", "Change 'containers[].securityContext.privileged' to 'false'."),
    ("KSV011", "AVD-KSV-0011", "CPU not limited", "LOW", "Set a limit value under 'containers[].resources.limits.cpu'."),
];

/// Prowler AWS checks: (check id, title, severity, service, resource type, remediation).
pub const PROWLER: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("s3_bucket_level_public_access_block", "Check S3 Bucket Level Public Access Block.", "High", "s3", "AwsS3Bucket", "Enable the S3 bucket level public access block."),
    ("s3_bucket_default_encryption", "Check if S3 buckets have default encryption (SSE) enabled.", "Medium", "s3", "AwsS3Bucket", "Enable default encryption with SSE-S3 or SSE-KMS."),
    ("ec2_securitygroup_allow_ingress_from_internet_to_tcp_port_22", "Ensure no security groups allow ingress from 0.0.0.0/0 or ::/0 to SSH port 22.", "High", "ec2", "AwsEc2SecurityGroup", "Restrict SSH to known address ranges or use Session Manager."),
    ("ec2_instance_imdsv2_enabled", "Check if EC2 Instance Metadata Service Version 2 (IMDSv2) is Enabled and Required.", "Medium", "ec2", "AwsEc2Instance", "Require IMDSv2 (HttpTokens=required) on the instance."),
    ("rds_instance_storage_encrypted", "Check if RDS instances storage is encrypted.", "Medium", "rds", "AwsRdsDbInstance", "Enable encryption; existing instances need a snapshot restore."),
    ("iam_user_mfa_enabled_console_access", "Ensure multi-factor authentication (MFA) is enabled for all IAM users that have a console password.", "High", "iam", "AwsIamUser", "Enable MFA for the user's console access."),
    ("cloudtrail_multi_region_enabled", "Ensure CloudTrail is enabled in all regions.", "High", "cloudtrail", "AwsCloudTrailTrail", "Create a multi-region trail."),
    ("guardduty_is_enabled", "Check if GuardDuty is enabled.", "Medium", "guardduty", "AwsGuardDutyDetector", "Enable GuardDuty in every region in use."),
];

/// Semgrep rules: (rule id, message, level, CWE, file extension).
pub const SEMGREP: &[(&str, &str, &str, &str, &str)] = &[
    ("python.lang.security.audit.formatted-sql-query.formatted-sql-query", "Detected possible formatted SQL query. Use parameterized queries instead.", "error", "CWE-89", "py"),
    ("python.lang.security.audit.subprocess-shell-true.subprocess-shell-true", "Found 'subprocess' function with 'shell=True'. This is dangerous because this call will spawn the command using a shell process.", "error", "CWE-78", "py"),
    ("javascript.express.security.audit.xss.direct-response-write.direct-response-write", "Detected directly writing to a Response object from user-defined input. This could result in XSS.", "warning", "CWE-79", "js"),
    ("java.lang.security.audit.crypto.use-of-md5.use-of-md5", "Detected MD5 hash algorithm which is considered insecure.", "warning", "CWE-328", "java"),
    ("go.lang.security.audit.net.use-tls-skip-verify.use-tls-skip-verify", "Checks for disabling of TLS/SSL certificate verification.", "warning", "CWE-295", "go"),
    ("java.lang.security.audit.xxe.documentbuilderfactory-disallow-doctype-decl-missing", "DOCTYPE declarations are enabled for this DocumentBuilderFactory. This is vulnerable to XML external entity attacks.", "error", "CWE-611", "java"),
];

/// gitleaks rules: (rule id, description).
pub const GITLEAKS: &[(&str, &str)] = &[
    ("aws-access-token", "Identified a pattern that may indicate AWS credentials, risking unauthorized cloud resource access and data breaches on AWS platforms."),
    ("github-pat", "Uncovered a GitHub Personal Access Token, potentially leading to unauthorized repository access and sensitive content exposure."),
    ("slack-webhook-url", "Discovered a Slack Webhook, which could lead to unauthorized message posting and data leakage in Slack channels."),
    ("private-key", "Identified a Private Key, which may compromise cryptographic security and sensitive data encryption."),
    ("stripe-access-token", "Found a Stripe Access Token, posing a risk to payment processing services and sensitive financial data."),
];
