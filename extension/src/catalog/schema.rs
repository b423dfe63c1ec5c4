//! The catalog tables and views, created by `CREATE EXTENSION pg_trickle`. The SQL lives here
//! so the catalog's shape is visible in one place.

pgrx::extension_sql!(
    r#"
-- Change buffers and capture functions; never readable by PUBLIC.
CREATE SCHEMA pgtrickle_changes;
REVOKE ALL ON SCHEMA pgtrickle_changes FROM PUBLIC;
-- Orders the change rows one transaction writes (see frontier_own_seq).
CREATE SEQUENCE pgtrickle_changes.change_seq CACHE 100;
-- A TRUNCATE of a source (or an UPDATE or DELETE of an append-only one): its dependants
-- recompute in full at their next refresh.
CREATE TABLE pgtrickle_changes.resets (
    source_relid oid NOT NULL,
    __pgt_xid    xid8 NOT NULL DEFAULT pg_current_xact_id(),
    __pgt_seq    bigint NOT NULL DEFAULT nextval('pgtrickle_changes.change_seq')
);
-- Only OIDs and transaction ids; read by refreshes running as stream table owners.
GRANT SELECT ON pgtrickle_changes.resets TO PUBLIC;
GRANT USAGE ON SCHEMA pgtrickle TO PUBLIC;

-- One row per stream table. Every refresh updates its row and inserts a history row, so
-- neither table has CHECK constraints: PostgreSQL compiles every CHECK expression of a table
-- anew in each statement that writes to it (about 0.1 ms of a one-row refresh). The values
-- written are validated by the SQL API, and read back through the core's parsers, which
-- report any other value as a corrupt catalog; the allowed ones are listed beside each column.
CREATE TABLE pgtrickle.pgt_stream_tables (
    pgt_id                    bigserial PRIMARY KEY,
    pgt_relid                 oid NOT NULL UNIQUE,
    pgt_schema                name NOT NULL,
    pgt_name                  name NOT NULL,
    original_query            text NOT NULL,
    defining_query            text NOT NULL,
    column_names              name[] NOT NULL,
    column_types              text[] NOT NULL,
    refresh_mode              text NOT NULL DEFAULT 'AUTO',  -- AUTO, FULL, DIFFERENTIAL, IMMEDIATE
    schedule                  text NOT NULL DEFAULT 'calculated',
    schedule_interval_seconds bigint,  -- > 0
    tier                      text NOT NULL DEFAULT 'hot',  -- hot, warm, cold, frozen
    append_only               boolean NOT NULL DEFAULT false,
    diamond_consistency       text NOT NULL DEFAULT 'none',  -- none, atomic
    pooler_compatibility_mode boolean NOT NULL DEFAULT false,
    has_volatile_functions    boolean NOT NULL DEFAULT false,
    -- INITIALIZING, ACTIVE, SUSPENDED, ERROR
    status                    text NOT NULL DEFAULT 'INITIALIZING',
    last_error_message        text,
    last_error_at             timestamptz,
    -- failed scheduled refreshes since the last success; at pg_trickle.max_consecutive_failures
    -- the stream table is SUSPENDED
    consecutive_failures      integer NOT NULL DEFAULT 0,
    last_refresh_mode         text,
    last_refresh_reason       text,
    maintenance               text,
    differential_blocker      text,
    frontier                  pg_snapshot,
    frontier_own_xid          xid8,
    frontier_own_seq          bigint,
    frontier_lsn              pg_lsn,
    frontier_at               timestamptz,
    -- for a query that reads CURRENT_DATE: its value when the last refresh ran; the query is
    -- recomputed in full once it has changed, and maintained differentially in between
    frontier_date             date,
    created_at                timestamptz NOT NULL DEFAULT now(),
    last_refreshed_at         timestamptz,
    -- the last refresh that inserted, updated or deleted rows
    last_changed_at           timestamptz,
    UNIQUE (pgt_schema, pgt_name)
);
COMMENT ON TABLE pgtrickle.pgt_stream_tables IS
    'pg_trickle: one row per stream table; defining_query is the schema-qualified form of original_query';

-- What each stream table reads: the relations named in its query (is_direct) and, for views,
-- the relations behind them. columns: for differentially maintained stream tables, the
-- columns of the source whose changes are captured for it (NULL otherwise).
CREATE TABLE pgtrickle.pgt_dependencies (
    pgt_id        bigint NOT NULL REFERENCES pgtrickle.pgt_stream_tables ON DELETE CASCADE,
    source_relid  oid NOT NULL,
    source_kind   text NOT NULL
        CHECK (source_kind IN ('TABLE', 'PARTITIONED_TABLE', 'VIEW', 'MATERIALIZED_VIEW',
                               'FOREIGN_TABLE', 'STREAM_TABLE')),
    is_direct     boolean NOT NULL,
    columns       name[],
    PRIMARY KEY (pgt_id, source_relid)
);
CREATE INDEX ON pgtrickle.pgt_dependencies (source_relid);

CREATE VIEW pgtrickle.stream_tables_info AS
SELECT s.pgt_id,
       s.pgt_schema,
       s.pgt_name,
       s.pgt_relid::regclass AS relation,
       s.status,
       s.refresh_mode,
       s.last_refresh_mode,
       s.last_refresh_reason,
       s.maintenance,
       s.differential_blocker,
       s.schedule,
       s.tier,
       s.created_at,
       s.last_refreshed_at,
       pg_catalog.clock_timestamp() - s.last_refreshed_at AS staleness,
       (s.schedule_interval_seconds IS NOT NULL
        AND (s.last_refreshed_at IS NULL
             OR pg_catalog.clock_timestamp() - s.last_refreshed_at
                > s.schedule_interval_seconds * interval '1 second')) AS is_stale,
       s.last_changed_at,
       s.last_error_message,
       s.last_error_at,
       s.consecutive_failures
FROM pgtrickle.pgt_stream_tables s;

-- One row per refresh that committed (manual, scheduled, or run by create/alter) and per
-- scheduled refresh that failed (status FAILED, refresh_mode NULL), kept for
-- pg_trickle.history_retention_hours after it finished. No foreign key: every refresh inserts
-- here, and its check (a statement and a row lock per insert) was a noticeable part of a small
-- refresh; the rows of a stream table are deleted when it is dropped.
CREATE TABLE pgtrickle.pgt_refresh_history (
    refresh_id     bigserial PRIMARY KEY,
    pgt_id         bigint NOT NULL,
    started_at     timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL,
    duration_ms    double precision NOT NULL,
    refresh_mode   text,  -- FULL, DIFFERENTIAL, NOOP
    reason         text,
    rows_inserted  bigint NOT NULL DEFAULT 0,
    rows_updated   bigint NOT NULL DEFAULT 0,
    rows_deleted   bigint NOT NULL DEFAULT 0,
    status         text NOT NULL DEFAULT 'SUCCEEDED',  -- SUCCEEDED, FAILED
    error_message  text
);
CREATE INDEX ON pgtrickle.pgt_refresh_history (pgt_id, finished_at);
COMMENT ON TABLE pgtrickle.pgt_refresh_history IS
    'pg_trickle: one row per refresh; rows older than pg_trickle.history_retention_hours are removed';

GRANT SELECT ON pgtrickle.pgt_stream_tables, pgtrickle.pgt_dependencies,
                pgtrickle.stream_tables_info, pgtrickle.pgt_refresh_history TO PUBLIC;
"#,
    name = "catalog",
    bootstrap
);
