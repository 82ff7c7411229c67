//! Versioned schema migrations, applied in order on open. Never edit a released migration: add one.

pub const MIGRATIONS: &[(i32, &str, &str)] = &[
(
    1,
    "foundation: assets, findings, detections, imports, quarantine",
    r#"
CREATE SEQUENCE seq_asset START 1;
CREATE SEQUENCE seq_finding START 1;
CREATE SEQUENCE seq_import START 1;

CREATE TABLE assets (
    asset_id        BIGINT NOT NULL,
    name            VARCHAR NOT NULL,
    kind            VARCHAR NOT NULL,
    hostname        VARCHAR,
    fqdn            VARCHAR,
    ips             VARCHAR[] NOT NULL DEFAULT [],
    os              VARCHAR,
    cloud_provider  VARCHAR,
    account         VARCHAR,
    region          VARCHAR,
    environment     VARCHAR,
    business_unit   VARCHAR,
    owner           VARCHAR,
    criticality     INTEGER,
    internet_facing BOOLEAN,
    tags            VARCHAR[] NOT NULL DEFAULT [],
    sources         VARCHAR[] NOT NULL DEFAULT [],
    in_cmdb         BOOLEAN NOT NULL DEFAULT false,
    first_seen      TIMESTAMP,
    last_seen       TIMESTAMP
);

CREATE TABLE asset_identifiers (
    asset_id   BIGINT NOT NULL,
    id_kind    VARCHAR NOT NULL,
    id_value   VARCHAR NOT NULL,
    source     VARCHAR,
    first_seen TIMESTAMP
);

CREATE TABLE findings (
    finding_id        BIGINT NOT NULL,
    fingerprint       VARCHAR NOT NULL,
    asset_id          BIGINT NOT NULL,
    asset_name        VARCHAR,
    sources           VARCHAR[] NOT NULL,
    vuln_id           VARCHAR NOT NULL,
    vuln_key          VARCHAR NOT NULL,
    loc_key           VARCHAR NOT NULL,
    cves              VARCHAR[] NOT NULL DEFAULT [],
    aliases           VARCHAR[] NOT NULL DEFAULT [],
    cwes              VARCHAR[] NOT NULL DEFAULT [],
    title             VARCHAR NOT NULL,
    description       VARCHAR,
    severity          VARCHAR NOT NULL,
    cvss_score        DOUBLE,
    cvss_vector       VARCHAR,
    category          VARCHAR NOT NULL,
    package           VARCHAR,
    installed_version VARCHAR,
    fixed_version     VARCHAR,
    solution          VARCHAR,
    port              INTEGER,
    protocol          VARCHAR,
    location          VARCHAR,
    status            VARCHAR NOT NULL,
    first_seen        TIMESTAMP NOT NULL,
    last_seen         TIMESTAMP NOT NULL,
    fixed_at          TIMESTAMP,
    times_reopened    INTEGER NOT NULL DEFAULT 0,
    exploit_available BOOLEAN,
    first_import_id   BIGINT,
    last_import_id    BIGINT
);

CREATE TABLE detections (
    import_id    BIGINT NOT NULL,
    finding_id   BIGINT NOT NULL,
    tool         VARCHAR NOT NULL,
    raw_id       VARCHAR,
    vuln_id      VARCHAR,
    cves         VARCHAR[],
    raw_severity VARCHAR,
    severity     VARCHAR,
    asset_ref    VARCHAR,
    port         INTEGER,
    protocol     VARCHAR,
    location     VARCHAR,
    seen_at      TIMESTAMP NOT NULL
);

CREATE TABLE imports (
    import_id   BIGINT NOT NULL,
    file        VARCHAR NOT NULL,
    sha256      VARCHAR NOT NULL,
    bytes       BIGINT,
    format      VARCHAR NOT NULL,
    tool        VARCHAR NOT NULL,
    scan_time   TIMESTAMP NOT NULL,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL,
    records     BIGINT NOT NULL,
    new         BIGINT NOT NULL,
    seen_again  BIGINT NOT NULL,
    fixed       BIGINT NOT NULL,
    reopened    BIGINT NOT NULL,
    skipped     BIGINT NOT NULL,
    assets      BIGINT NOT NULL
);

-- Which assets an import covered, and under which identifiers the tool named them.
CREATE TABLE import_assets (
    import_id   BIGINT NOT NULL,
    asset_id    BIGINT NOT NULL,
    asset_ref   VARCHAR,
    identifiers VARCHAR[]
);

CREATE TABLE quarantine (
    import_id BIGINT NOT NULL,
    file      VARCHAR NOT NULL,
    position  VARCHAR,
    reason    VARCHAR NOT NULL,
    snippet   VARCHAR
);
"#,
),
(
    2,
    "scopes: named asset filters",
    r#"
CREATE SEQUENCE seq_scope START 1;
CREATE TABLE scopes (
    scope_id    BIGINT NOT NULL,
    name        VARCHAR NOT NULL,
    filter      VARCHAR NOT NULL,
    description VARCHAR,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
"#,
),
(
    3,
    "intel feeds (KEV, EPSS, ATT&CK, CAPEC, CTID) and risk scores on findings",
    r#"
CREATE TABLE intel_feeds (
    feed       VARCHAR NOT NULL,   -- kev, epss, attack, capec, ctid:<framework>
    version    VARCHAR,
    feed_date  TIMESTAMP,
    file       VARCHAR NOT NULL,
    sha256     VARCHAR NOT NULL,
    records    BIGINT NOT NULL,
    loaded_at  TIMESTAMP NOT NULL
);
CREATE TABLE kev (
    cve             VARCHAR NOT NULL,
    vendor          VARCHAR,
    product         VARCHAR,
    name            VARCHAR,
    date_added      DATE,
    due_date        DATE,
    ransomware      BOOLEAN NOT NULL,
    required_action VARCHAR,
    cwes            VARCHAR[] NOT NULL DEFAULT []
);
CREATE TABLE epss (
    cve        VARCHAR NOT NULL,
    epss       DOUBLE NOT NULL,
    percentile DOUBLE
);
CREATE TABLE attack_techniques (
    technique_id    VARCHAR NOT NULL,
    name            VARCHAR NOT NULL,
    tactics         VARCHAR[] NOT NULL DEFAULT [],
    is_subtechnique BOOLEAN NOT NULL,
    deprecated      BOOLEAN NOT NULL,
    url             VARCHAR
);
CREATE TABLE attack_tactics (
    tactic_id  VARCHAR NOT NULL,
    shortname  VARCHAR NOT NULL,
    name       VARCHAR NOT NULL
);
CREATE TABLE capec (
    capec_id   VARCHAR NOT NULL,
    name       VARCHAR NOT NULL,
    cwes       VARCHAR[] NOT NULL DEFAULT [],
    techniques VARCHAR[] NOT NULL DEFAULT [],
    deprecated BOOLEAN NOT NULL
);
CREATE TABLE ctid_mappings (
    framework              VARCHAR NOT NULL,
    capability_id          VARCHAR NOT NULL,
    capability_group       VARCHAR,
    capability_description VARCHAR,
    mapping_type           VARCHAR,
    technique_id           VARCHAR NOT NULL,
    technique_name         VARCHAR,
    score_category         VARCHAR,
    score_value            VARCHAR
);
ALTER TABLE findings ADD COLUMN risk_score DOUBLE;
ALTER TABLE findings ADD COLUMN priority VARCHAR;
ALTER TABLE findings ADD COLUMN kev BOOLEAN;
ALTER TABLE findings ADD COLUMN kev_cve VARCHAR;
ALTER TABLE findings ADD COLUMN kev_added DATE;
ALTER TABLE findings ADD COLUMN kev_due DATE;
ALTER TABLE findings ADD COLUMN kev_ransomware BOOLEAN;
ALTER TABLE findings ADD COLUMN epss DOUBLE;
ALTER TABLE findings ADD COLUMN epss_percentile DOUBLE;
ALTER TABLE findings ADD COLUMN internet_exposed BOOLEAN;
ALTER TABLE findings ADD COLUMN runtime BOOLEAN;
ALTER TABLE findings ADD COLUMN risk_factors VARCHAR;
ALTER TABLE findings ADD COLUMN fix_kind VARCHAR;
ALTER TABLE findings ADD COLUMN fix VARCHAR;
ALTER TABLE findings ADD COLUMN fix_target VARCHAR;

-- Numeric parts of a version string, for ordering versions ("2.17.1" after "2.9.0").
CREATE MACRO version_key(v) AS list_transform(regexp_extract_all(v, '[0-9]+'), lambda x: TRY_CAST(x AS BIGINT));

-- A fix group's label (an aggregate): package upgrades name the highest target version the group needs.
CREATE MACRO fix_label(kind, fix, target) AS
    CASE WHEN kind = 'package_upgrade' THEN coalesce(fix || ' to ' || arg_max(target, version_key(target)), fix) ELSE fix END;

-- Open findings grouped by the fix that removes them, biggest risk removed first.
CREATE VIEW fix_groups AS
SELECT fix_label(f.fix_kind, f.fix, f.fix_target) AS fix,
       f.fix_kind AS kind,
       count(*) AS findings,
       count(DISTINCT f.asset_id) AS assets,
       round(sum(coalesce(f.risk_score, 0)), 1) AS risk_removed,
       count(*) FILTER (WHERE f.priority = 'P1') AS p1,
       count(*) FILTER (WHERE f.kev) AS kev,
       list_sort(list_distinct(list(a.owner))) AS owners,
       f.fix AS fix_key
FROM findings f LEFT JOIN assets a ON a.asset_id = f.asset_id
WHERE f.status IN ('open', 'reopened') AND f.fix IS NOT NULL
GROUP BY f.fix_kind, f.fix
ORDER BY risk_removed DESC, findings DESC, fix;

-- The same, split by asset owner (one row per fix and owner).
CREATE VIEW fix_group_owners AS
SELECT fix_label(f.fix_kind, f.fix, f.fix_target) AS fix,
       f.fix_kind AS kind,
       coalesce(a.owner, '(no owner)') AS owner,
       count(*) AS findings,
       count(DISTINCT f.asset_id) AS assets,
       round(sum(coalesce(f.risk_score, 0)), 1) AS risk_removed,
       f.fix AS fix_key
FROM findings f LEFT JOIN assets a ON a.asset_id = f.asset_id
WHERE f.status IN ('open', 'reopened') AND f.fix IS NOT NULL
GROUP BY f.fix_kind, f.fix, coalesce(a.owner, '(no owner)')
ORDER BY risk_removed DESC, findings DESC, fix, owner;
"#,
),
(
    4,
    "work items: remediation handed from prioritisation to mobilisation",
    r#"
CREATE SEQUENCE seq_work_item START 1;
CREATE TABLE work_items (
    work_item_id BIGINT NOT NULL,
    title        VARCHAR NOT NULL,
    fix_kind     VARCHAR,
    fix          VARCHAR,
    owner        VARCHAR NOT NULL,
    assignee     VARCHAR,
    priority     VARCHAR,
    status       VARCHAR NOT NULL,   -- new, triaged, assigned, in_progress, fixed, verified, risk_accepted, false_positive
    due_date     DATE,
    source       VARCHAR,            -- how it was made (the selection or fix group it came from)
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);
CREATE TABLE work_item_findings (
    work_item_id BIGINT NOT NULL,
    finding_id   BIGINT NOT NULL,
    added_at     TIMESTAMP NOT NULL
);
"#,
),
(
    5,
    "controls, technique mappings, coverage and verification",
    r#"
CREATE TABLE controls (
    control_id VARCHAR NOT NULL,
    name       VARCHAR,
    kind       VARCHAR NOT NULL,   -- edr, waf, ngfw, ips, email_gateway, mfa, cloud_guardrail, dlp, other
    product    VARCHAR,            -- a CTID capability id or a NIST 800-53 control id
    product_key VARCHAR,           -- product as the CTID mappings spell it (lower case, NIST ids zero-padded)
    mode       VARCHAR NOT NULL,   -- block, detect
    covers     VARCHAR NOT NULL,   -- ;-separated: *, internet, scope:, filter:, tag:, account:, bu:, env:, kind:, os:, CIDR
    status     VARCHAR NOT NULL,   -- healthy, degraded, disabled
    source     VARCHAR,
    loaded_at  TIMESTAMP
);
CREATE TABLE control_assets (
    control_id VARCHAR NOT NULL,
    asset_id   BIGINT NOT NULL
);
ALTER TABLE findings ADD COLUMN mitigated_by VARCHAR[];

CREATE TABLE user_mappings (
    applies_to   VARCHAR NOT NULL,   -- cve, cwe, vuln (a scanner id), control (control_id), product
    id           VARCHAR NOT NULL,
    technique_id VARCHAR NOT NULL,
    relation     VARCHAR NOT NULL,   -- exploitation_technique, primary_impact, secondary_impact, protect, detect, respond, none
    strength     VARCHAR,            -- minimal, partial, significant
    source       VARCHAR NOT NULL    -- file and line
);

-- The ATT&CK techniques each open finding exposes, and why (user mappings add to or override the feeds').
CREATE VIEW exposure_techniques AS
WITH base AS (
    SELECT f.finding_id, m.technique_id, m.mapping_type AS relation, 'ctid:kev ' || f.cve AS source
    FROM (SELECT finding_id, unnest(cves) AS cve FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND len(cves) > 0) f
    JOIN ctid_mappings m ON m.framework = 'kev' AND m.capability_id = f.cve
    UNION ALL
    SELECT f.finding_id, unnest(c.techniques) AS technique_id, 'capec' AS relation, 'cwe ' || f.cwe || ' -> ' || c.capec_id AS source
    FROM (SELECT finding_id, unnest(cwes) AS cwe FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND len(cwes) > 0) f
    JOIN capec c ON list_contains(c.cwes, f.cwe) AND NOT c.deprecated AND len(c.techniques) > 0
    UNION ALL
    SELECT f.finding_id, 'T1190', 'exploitation_technique', 'rule: exploitable vulnerability on an internet-facing asset'
    FROM findings f JOIN assets a ON a.asset_id = f.asset_id
    WHERE f.status IN ('open', 'reopened', 'mitigated') AND f.category IN ('vulnerability', 'web')
      AND (coalesce(f.kev, false) OR coalesce(f.exploit_available, false) OR coalesce(f.epss, 0) >= 0.1)
      AND (coalesce(a.internet_facing, false) OR coalesce(f.internet_exposed, false))
    UNION ALL
    SELECT finding_id, 'T1552', 'exploitation_technique', 'rule: exposed secret'
    FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND category = 'secret'
    UNION ALL
    SELECT finding_id, 'T1530', 'exploitation_technique', 'rule: public cloud storage'
    FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND category = 'misconfiguration'
      AND (title ILIKE '%bucket%' OR title ILIKE '%storage%' OR title ILIKE '%blob%')
      AND (title ILIKE '%public%' OR title ILIKE '%everyone%' OR title ILIKE '%anonymous%')
),
keyed AS (
    SELECT finding_id, unnest(cves) AS k, 'cve' AS applies_to FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND len(cves) > 0
    UNION ALL SELECT finding_id, unnest(cwes), 'cwe' FROM findings WHERE status IN ('open', 'reopened', 'mitigated') AND len(cwes) > 0
    UNION ALL SELECT finding_id, vuln_id, 'vuln' FROM findings WHERE status IN ('open', 'reopened', 'mitigated')
),
users AS (
    SELECT k.finding_id, u.technique_id, u.relation, u.source
    FROM keyed k JOIN user_mappings u ON u.applies_to = k.applies_to AND upper(u.id) = upper(k.k)
)
SELECT b.* FROM base b
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.finding_id = b.finding_id AND u.technique_id = b.technique_id)
UNION ALL
SELECT finding_id, technique_id, relation, source FROM users WHERE relation <> 'none';

-- The techniques each control protects against, detects or responds to, with the mapping's strength.
CREATE VIEW control_techniques AS
WITH base AS (
    SELECT c.control_id, m.technique_id,
           coalesce(m.score_category, CASE WHEN m.mapping_type = 'mitigates' THEN 'protect' END) AS category,
           m.score_value AS strength,
           'ctid:' || m.framework || ' ' || m.capability_id AS source
    FROM controls c JOIN ctid_mappings m ON lower(m.capability_id) = c.product_key AND m.framework <> 'kev'
),
users AS (
    SELECT c.control_id, u.technique_id, u.relation AS category, u.strength, u.source
    FROM controls c JOIN user_mappings u
      ON (u.applies_to = 'control' AND u.id = c.control_id) OR (u.applies_to = 'product' AND lower(u.id) = c.product_key)
)
SELECT b.* FROM base b
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.control_id = b.control_id AND u.technique_id = b.technique_id)
UNION ALL
SELECT control_id, technique_id, category, strength, source FROM users WHERE category <> 'none';

-- Technique x control where the control is deployed on the exposed asset and healthy.
CREATE VIEW control_coverage AS
SELECT e.technique_id, ct.control_id, ct.category, ct.strength, c.mode,
       count(DISTINCT e.finding_id) AS findings, count(DISTINCT f.asset_id) AS assets
FROM exposure_techniques e
JOIN findings f ON f.finding_id = e.finding_id
JOIN control_assets ca ON ca.asset_id = f.asset_id
JOIN controls c ON c.control_id = ca.control_id AND c.status = 'healthy'
JOIN control_techniques ct ON ct.control_id = c.control_id AND ct.technique_id = e.technique_id
GROUP BY ALL;

-- What rescans say about each finding: `verified` (fixed: a later scan of its scope covered the asset
-- and did not see it), `regressed` (seen again after a fix), `awaiting_rescan` (its work item is marked
-- fixed, no scan has confirmed it yet), `not_covered` (a later scan of the same scope no longer covered
-- the asset, so nothing can be confirmed), `open` (nothing to confirm yet).
CREATE VIEW finding_verification AS
WITH dropped AS (
    SELECT DISTINCT f.finding_id
    FROM findings f
    JOIN imports l ON l.import_id = f.last_import_id
    JOIN imports i ON i.tool = l.tool AND i.scan_time > l.scan_time
    WHERE f.status IN ('open', 'reopened', 'mitigated')
      AND EXISTS (SELECT 1 FROM import_assets a JOIN import_assets b ON b.asset_id = a.asset_id
                  WHERE a.import_id = l.import_id AND b.import_id = i.import_id)
      AND NOT EXISTS (SELECT 1 FROM import_assets c WHERE c.import_id = i.import_id AND c.asset_id = f.asset_id)
),
ticketed AS (
    SELECT DISTINCT wf.finding_id FROM work_item_findings wf JOIN work_items w USING (work_item_id) WHERE w.status = 'fixed'
)
SELECT f.finding_id, f.asset_id, f.status,
       CASE WHEN f.status = 'reopened' THEN 'regressed'
            WHEN f.status = 'fixed' THEN 'verified'
            WHEN d.finding_id IS NOT NULL THEN 'not_covered'
            WHEN t.finding_id IS NOT NULL THEN 'awaiting_rescan'
            WHEN f.status IN ('open', 'mitigated') THEN 'open'
       END AS state,
       f.last_seen, f.fixed_at, f.times_reopened
FROM findings f
LEFT JOIN dropped d ON d.finding_id = f.finding_id
LEFT JOIN ticketed t ON t.finding_id = f.finding_id
WHERE f.status IN ('open', 'reopened', 'mitigated', 'fixed');
"#,
),
(
    6,
    "mobilisation: routing, SLAs, exceptions, audit log",
    r#"
ALTER TABLE work_items ADD COLUMN team VARCHAR;            -- the routing rule's team (or the asset owner)
ALTER TABLE work_items ADD COLUMN rule VARCHAR;            -- the routing rule that placed it
ALTER TABLE work_items ADD COLUMN jira_project VARCHAR;
ALTER TABLE work_items ADD COLUMN snow_group VARCHAR;      -- ServiceNow assignment group
ALTER TABLE work_items ADD COLUMN fingerprint VARCHAR;     -- stable key: the same fix for the same team is one work item
ALTER TABLE work_items ADD COLUMN fix_target VARCHAR;
ALTER TABLE work_items ADD COLUMN closed_at TIMESTAMP;
UPDATE work_items SET team = owner;
-- Work items handed over before fingerprints existed keep their fix group's key, so later findings join them.
UPDATE work_items SET fingerprint = CASE WHEN fix IS NOT NULL THEN 'fix|' || owner || '|' || fix_kind || '|' || fix ELSE 'pick|' || work_item_id END;
ALTER TABLE findings ADD COLUMN reopened_at TIMESTAMP;
UPDATE findings SET reopened_at = last_seen WHERE status = 'reopened';

-- Days to fix per priority; `settings` holds the clock rule for reopened findings (restart | keep).
CREATE TABLE sla_policy (priority VARCHAR NOT NULL, days INTEGER NOT NULL);
INSERT INTO sla_policy VALUES ('P1', 7), ('P2', 30), ('P3', 90), ('P4', 180);
CREATE TABLE settings (key VARCHAR NOT NULL, value VARCHAR);
INSERT INTO settings VALUES ('sla_reopened', 'restart');

-- The SLA of every open finding: the policy's days from first sighting (or from the reopening, when the
-- clock restarts), capped by the CISA KEV due date; a KEV deadline already past when the finding was
-- first seen gives the directive's window (due - added) from that day instead.
CREATE VIEW finding_sla AS
WITH b AS (
    SELECT f.finding_id, f.asset_id, f.priority, f.status, p.days AS sla_days, f.kev_added, f.kev_due,
           CAST(CASE WHEN f.reopened_at IS NOT NULL AND (SELECT value FROM settings WHERE key = 'sla_reopened') = 'restart'
                     THEN f.reopened_at ELSE f.first_seen END AS DATE) AS clock_start
    FROM findings f JOIN sla_policy p ON p.priority = f.priority
    WHERE f.status IN ('open', 'reopened', 'mitigated')
),
d AS (
    SELECT *, CAST(clock_start + to_days(sla_days) AS DATE) AS policy_due,
           CASE WHEN kev_due IS NULL THEN NULL
                WHEN kev_due >= clock_start THEN kev_due
                ELSE CAST(clock_start + to_days(greatest(CAST(kev_due - coalesce(kev_added, kev_due) AS INTEGER), 0)) AS DATE) END AS kev_cap
    FROM b
)
SELECT finding_id, asset_id, priority, status, sla_days, clock_start, policy_due, kev_cap,
       least(policy_due, coalesce(kev_cap, policy_due)) AS due_date,
       CASE WHEN kev_cap IS NOT NULL AND kev_cap < policy_due THEN 'kev' ELSE 'policy' END AS due_by,
       CAST(least(policy_due, coalesce(kev_cap, policy_due)) - CAST(current_timestamp::TIMESTAMP AS DATE) AS INTEGER) AS days_left,
       least(policy_due, coalesce(kev_cap, policy_due)) < CAST(current_timestamp::TIMESTAMP AS DATE) AS breached
FROM d;

CREATE SEQUENCE seq_exception START 1;
CREATE TABLE exceptions (
    exception_id  BIGINT NOT NULL,
    kind          VARCHAR NOT NULL,   -- risk_accepted, false_positive
    justification VARCHAR NOT NULL,
    requester     VARCHAR NOT NULL,
    approver      VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    expires_at    TIMESTAMP,          -- required for risk acceptance
    status        VARCHAR NOT NULL,   -- active, expired, revoked
    ended_at      TIMESTAMP,
    work_item_id  BIGINT,             -- when a whole work item was excepted
    selection     VARCHAR             -- what was chosen (finding ids, filter, work item)
);
CREATE TABLE exception_findings (
    exception_id BIGINT NOT NULL,
    finding_id   BIGINT NOT NULL,
    prior_status VARCHAR NOT NULL
);

CREATE TABLE audit_log (
    changed_at TIMESTAMP NOT NULL,
    actor     VARCHAR NOT NULL,
    entity    VARCHAR NOT NULL,       -- work_item, exception, finding
    entity_id BIGINT NOT NULL,
    action    VARCHAR NOT NULL,       -- created, status, assignee, findings_added, expired, revoked ...
    old_value VARCHAR,
    new_value VARCHAR,
    detail    VARCHAR
);

-- Work items with what the board shows: open findings, assets, SLA state.
CREATE VIEW work_board AS
WITH wf AS (
    SELECT wf.work_item_id, count(*) AS findings,
           count(*) FILTER (WHERE f.status IN ('open', 'reopened', 'mitigated')) AS open_findings,
           count(*) FILTER (WHERE f.status = 'fixed') AS fixed_findings,
           count(DISTINCT f.asset_id) AS assets,
           round(sum(coalesce(f.risk_score, 0)) FILTER (WHERE f.status IN ('open', 'reopened', 'mitigated')), 1) AS risk,
           bool_or(coalesce(f.kev, false) AND f.status IN ('open', 'reopened', 'mitigated')) AS kev
    FROM work_item_findings wf JOIN findings f USING (finding_id) GROUP BY wf.work_item_id
)
SELECT w.work_item_id, w.status, w.priority, w.title, w.team, w.assignee, w.due_date,
       CAST(w.due_date - CAST(current_timestamp::TIMESTAMP AS DATE) AS INTEGER) AS days_left,
       CASE WHEN w.status IN ('fixed', 'verified', 'risk_accepted', 'false_positive') OR w.due_date IS NULL THEN 'none'
            WHEN w.due_date < CAST(current_timestamp::TIMESTAMP AS DATE) THEN 'breached'
            WHEN w.due_date <= CAST(current_timestamp::TIMESTAMP AS DATE) + 3 THEN 'due_soon'
            ELSE 'ok' END AS sla,
       coalesce(wf.findings, 0) AS findings, coalesce(wf.open_findings, 0) AS open_findings,
       coalesce(wf.fixed_findings, 0) AS fixed_findings, coalesce(wf.assets, 0) AS assets,
       coalesce(wf.risk, 0) AS risk, coalesce(wf.kev, false) AS kev,
       w.fix_kind, w.fix, w.fix_target, w.owner, w.rule, w.jira_project, w.snow_group, w.fingerprint,
       w.source, w.created_at, w.updated_at, w.closed_at
FROM work_items w LEFT JOIN wf USING (work_item_id);

-- Time to fix per finding that was fixed, with the team whose work item held it.
CREATE VIEW remediation_times AS
SELECT f.finding_id, f.priority, coalesce(t.team, '(no work item)') AS team, f.first_seen, f.fixed_at,
       round(date_diff('minute', f.first_seen, f.fixed_at) / 1440.0, 2) AS days_to_fix,
       CAST(date_trunc('month', f.fixed_at) AS DATE) AS month
FROM findings f
LEFT JOIN (SELECT wf.finding_id, arg_max(w.team, w.work_item_id) AS team
           FROM work_item_findings wf JOIN work_items w USING (work_item_id) GROUP BY wf.finding_id) t USING (finding_id)
WHERE f.status = 'fixed' AND f.fixed_at IS NOT NULL;

-- Every exception with its age and expiry.
CREATE VIEW exception_list AS
SELECT e.exception_id, e.kind, e.status, count(ef.finding_id) AS findings,
       count(ef.finding_id) FILTER (WHERE f.status IN ('accepted', 'false_positive')) AS held,
       e.justification, e.requester, e.approver, e.created_at, e.expires_at,
       CAST(CAST(current_timestamp::TIMESTAMP AS DATE) - CAST(e.created_at AS DATE) AS INTEGER) AS age_days,
       CAST(CAST(e.expires_at AS DATE) - CAST(current_timestamp::TIMESTAMP AS DATE) AS INTEGER) AS days_to_expiry,
       e.work_item_id, e.selection, e.ended_at
FROM exceptions e LEFT JOIN exception_findings ef USING (exception_id) LEFT JOIN findings f USING (finding_id)
GROUP BY ALL;
"#,
),
(
    7,
    "ticket sync: tickets, outbox, watermarks, conflicts",
    r#"
-- One row per work item and tracker: the ticket and what was last agreed with it.
CREATE TABLE tickets (
    work_item_id    BIGINT NOT NULL,
    system          VARCHAR NOT NULL,   -- jira, servicenow
    ticket_key      VARCHAR,            -- PROJ-123, INC0010001
    ticket_id       VARCHAR,            -- Jira issue id, ServiceNow sys_id
    url             VARCHAR,
    fingerprint     VARCHAR NOT NULL,   -- the label / correlation_id put on the ticket when it was created
    remote_status   VARCHAR,
    remote_category VARCHAR,            -- Jira statusCategory key, ServiceNow state value
    remote_assignee VARCHAR,
    remote_resolution VARCHAR,
    remote_comments INTEGER,
    remote_updated  VARCHAR,
    synced_status   VARCHAR,            -- the work item status both sides agreed on at the last sync
    synced_findings INTEGER,            -- findings the ticket was last told about
    last_synced     TIMESTAMP,
    error           VARCHAR
);
-- Every call to a tracker: the intent is written before the call, the outcome after it.
CREATE SEQUENCE seq_outbox START 1;
CREATE TABLE sync_outbox (
    outbox_id    BIGINT NOT NULL,
    system       VARCHAR NOT NULL,
    work_item_id BIGINT NOT NULL,
    action       VARCHAR NOT NULL,      -- create, transition, comment
    detail       VARCHAR,               -- target status, comment text
    fingerprint  VARCHAR NOT NULL,
    state        VARCHAR NOT NULL,      -- pending, sent (call under way), done, failed, uncertain
    attempts     INTEGER NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    error        VARCHAR
);
CREATE TABLE sync_state (system VARCHAR NOT NULL, watermark VARCHAR, last_run TIMESTAMP);
-- Changes made on both sides since the last sync: a person decides.
CREATE TABLE sync_conflicts (
    system       VARCHAR NOT NULL,
    work_item_id BIGINT NOT NULL,
    field        VARCHAR NOT NULL,
    local_value  VARCHAR,
    remote_value VARCHAR,
    remote_category VARCHAR,
    detected_at  TIMESTAMP NOT NULL,
    resolved_at  TIMESTAMP,
    resolution   VARCHAR
);
"#,
),
(
    8,
    "saved queries",
    r#"
-- Named queries saved from the SQL pane; each is also the view saved_<name>, so a query that returns
-- finding_id narrows any findings queue (`saved=<name>`).
CREATE TABLE saved_queries (name VARCHAR NOT NULL, sql VARCHAR NOT NULL, finding_ids BOOLEAN NOT NULL, saved_at TIMESTAMP NOT NULL);
"#,
),
(
    9,
    "stand-up log",
    r#"
-- Stand-ups held (`ctem report standup`, the console's stand-up pane) and the data they covered (the
-- latest scan then): the next stand-up shows what changed since.
CREATE TABLE standup_log (held_at TIMESTAMP NOT NULL, data_until TIMESTAMP NOT NULL, via VARCHAR NOT NULL, scope VARCHAR);
"#,
),
(
    10,
    "KEV window for entries whose due date precedes their addition",
    r#"
-- As before, except for a KEV deadline already past at first sighting whose catalog entry gives no
-- window of its own (due on or before the day it was added: deadlines carried over from earlier
-- emergency directives, e.g. CVE-2021-34527): such a finding gets the catalog's standard two weeks
-- from the day it was first seen, not a deadline on the day it was found.
CREATE OR REPLACE VIEW finding_sla AS
WITH b AS (
    SELECT f.finding_id, f.asset_id, f.priority, f.status, p.days AS sla_days, f.kev_added, f.kev_due,
           CAST(CASE WHEN f.reopened_at IS NOT NULL AND (SELECT value FROM settings WHERE key = 'sla_reopened') = 'restart'
                     THEN f.reopened_at ELSE f.first_seen END AS DATE) AS clock_start
    FROM findings f JOIN sla_policy p ON p.priority = f.priority
    WHERE f.status IN ('open', 'reopened', 'mitigated')
),
d AS (
    SELECT *, CAST(clock_start + to_days(sla_days) AS DATE) AS policy_due,
           CASE WHEN kev_due IS NULL THEN NULL
                WHEN kev_due >= clock_start THEN kev_due
                WHEN kev_due > coalesce(kev_added, kev_due) THEN CAST(clock_start + to_days(CAST(kev_due - kev_added AS INTEGER)) AS DATE)
                ELSE CAST(clock_start + to_days(14) AS DATE) END AS kev_cap
    FROM b
)
SELECT finding_id, asset_id, priority, status, sla_days, clock_start, policy_due, kev_cap,
       least(policy_due, coalesce(kev_cap, policy_due)) AS due_date,
       CASE WHEN kev_cap IS NOT NULL AND kev_cap < policy_due THEN 'kev' ELSE 'policy' END AS due_by,
       CAST(least(policy_due, coalesce(kev_cap, policy_due)) - CAST(current_timestamp::TIMESTAMP AS DATE) AS INTEGER) AS days_left,
       least(policy_due, coalesce(kev_cap, policy_due)) < CAST(current_timestamp::TIMESTAMP AS DATE) AS breached
FROM d;
"#,
),
(
    11,
    "a regression stays one when a control mitigates it",
    r#"
-- As before, except that a finding that came back after a fix and is now mitigated by a control is
-- still `regressed` (the same test that puts it back to `reopened` when the control stops covering it).
CREATE OR REPLACE VIEW finding_verification AS
WITH dropped AS (
    SELECT DISTINCT f.finding_id
    FROM findings f
    JOIN imports l ON l.import_id = f.last_import_id
    JOIN imports i ON i.tool = l.tool AND i.scan_time > l.scan_time
    WHERE f.status IN ('open', 'reopened', 'mitigated')
      AND EXISTS (SELECT 1 FROM import_assets a JOIN import_assets b ON b.asset_id = a.asset_id
                  WHERE a.import_id = l.import_id AND b.import_id = i.import_id)
      AND NOT EXISTS (SELECT 1 FROM import_assets c WHERE c.import_id = i.import_id AND c.asset_id = f.asset_id)
),
ticketed AS (
    SELECT DISTINCT wf.finding_id FROM work_item_findings wf JOIN work_items w USING (work_item_id) WHERE w.status = 'fixed'
)
SELECT f.finding_id, f.asset_id, f.status,
       CASE WHEN f.status = 'reopened' OR (f.status = 'mitigated' AND f.times_reopened > 0) THEN 'regressed'
            WHEN f.status = 'fixed' THEN 'verified'
            WHEN d.finding_id IS NOT NULL THEN 'not_covered'
            WHEN t.finding_id IS NOT NULL THEN 'awaiting_rescan'
            WHEN f.status IN ('open', 'mitigated') THEN 'open'
       END AS state,
       f.last_seen, f.fixed_at, f.times_reopened
FROM findings f
LEFT JOIN dropped d ON d.finding_id = f.finding_id
LEFT JOIN ticketed t ON t.finding_id = f.finding_id
WHERE f.status IN ('open', 'reopened', 'mitigated', 'fixed');
"#,
),
(
    12,
    "what the scores were computed from",
    r#"
-- The per-asset context of the last rescore (exposure, criticality, environment, runtime and their
-- text), so the rescore after an import scores only the findings whose inputs changed.
CREATE TABLE risk_context (asset_id BIGINT, kind VARCHAR, exposed BOOLEAN, running BOOLEAN, points DOUBLE, text VARCHAR);
"#,
),
(
    13,
    "fingerprints as 128-bit UUIDs",
    r#"
-- A fingerprint was the md5 of the finding's key as 32 hex digits; it is now the same digest as a UUID,
-- as md5_number(key)::UUID gives it (the digest's bytes in reverse order), which the engine stores,
-- compares and writes as a number rather than as text.
-- (Built-in functions only: the write-ahead log replays this statement before extensions load.)
-- One not written by ctem (not 32 hex digits) becomes the zero UUID, which no key has: as before, it
-- matches nothing an import reports.
ALTER TABLE findings ALTER COLUMN fingerprint SET DATA TYPE UUID USING coalesce(TRY_CAST(
    substring(fingerprint, 31, 2) || substring(fingerprint, 29, 2) || substring(fingerprint, 27, 2) || substring(fingerprint, 25, 2) ||
    substring(fingerprint, 23, 2) || substring(fingerprint, 21, 2) || substring(fingerprint, 19, 2) || substring(fingerprint, 17, 2) ||
    substring(fingerprint, 15, 2) || substring(fingerprint, 13, 2) || substring(fingerprint, 11, 2) || substring(fingerprint, 9, 2) ||
    substring(fingerprint, 7, 2) || substring(fingerprint, 5, 2) || substring(fingerprint, 3, 2) || substring(fingerprint, 1, 2)
AS UUID), '00000000-0000-0000-0000-000000000000'::UUID);
"#,
),
];
