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
];
