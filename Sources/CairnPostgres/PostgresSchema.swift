/// The PostgreSQL schema as versioned migrations, as SQLite's is: released identifiers are never
/// edited, a change is a new migration, applied in place when a coordinator opens the database.
/// The tables hold the same records as SQLite's (`README`, "Where the data lives"), with
/// PostgreSQL's types: `bytea` for checksummed bytes, `double precision` for times and money,
/// `bigint` for counts, `boolean` for flags. Values are rows of their own (no inline blob: a
/// PostgreSQL page is 8 KiB and TOAST keeps large values out of line by itself).
public enum PostgresSchema {
    /// (identifier, statements). Each migration runs in one transaction.
    public static let migrations: [(String, [String])] = [
        ("v1-store", [
            """
            CREATE TABLE graphs (
                hash text PRIMARY KEY,
                name text NOT NULL,
                version bigint NOT NULL,
                file_name text NOT NULL,
                source bytea NOT NULL,
                source_codec smallint NOT NULL DEFAULT 0,
                source_sha256 bytea,
                bundle_hash text,
                created_at double precision NOT NULL
            )
            """,
            """
            CREATE TABLE bundles (
                hash text PRIMARY KEY,
                size bigint NOT NULL CHECK (size >= 0),
                data bytea NOT NULL
            )
            """,
            """
            CREATE TABLE runs (
                run_id text PRIMARY KEY,
                graph_hash text NOT NULL REFERENCES graphs(hash),
                graph_name text NOT NULL,
                graph_version bigint NOT NULL,
                status text NOT NULL CHECK (status IN ('queued','running','paused','completed','failed','cancelled')),
                durability text NOT NULL CHECK (durability IN ('hot','sync')),
                input bytea,
                input_sha256 bytea,
                output bytea,
                output_codec smallint NOT NULL DEFAULT 0,
                output_sha256 bytea,
                error text,
                interrupt bytea,
                interrupt_sha256 bytea,
                cost double precision NOT NULL DEFAULT 0,
                api_calls bigint NOT NULL DEFAULT 0,
                tokens_in bigint NOT NULL DEFAULT 0,
                tokens_out bigint NOT NULL DEFAULT 0,
                resume_count bigint NOT NULL DEFAULT 0,
                step bigint NOT NULL DEFAULT 0,
                checkpoint_id text,
                forked_from text,
                pinned boolean NOT NULL DEFAULT false,
                created_at double precision NOT NULL,
                updated_at double precision NOT NULL,
                finished_at double precision
            )
            """,
            "CREATE INDEX runs_by_status ON runs(status, updated_at)",
            "CREATE INDEX runs_by_graph ON runs(graph_name, created_at)",
            "CREATE INDEX runs_by_created ON runs(created_at, run_id)",
            """
            CREATE TABLE checkpoints (
                run_id text NOT NULL,
                ns text NOT NULL DEFAULT '',
                checkpoint_id text NOT NULL,
                parent_id text,
                step bigint NOT NULL,
                source text NOT NULL CHECK (source IN ('input','loop','resume','update','fork','rewind')),
                channel_versions bytea NOT NULL,
                next_tasks bytea NOT NULL,
                metadata bytea NOT NULL,
                created_at double precision NOT NULL,
                PRIMARY KEY (run_id, ns, checkpoint_id)
            )
            """,
            """
            CREATE TABLE channel_values (
                run_id text NOT NULL,
                ns text NOT NULL DEFAULT '',
                channel text NOT NULL,
                version text NOT NULL,
                base_version text,
                codec smallint NOT NULL,
                sha256 bytea NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (run_id, ns, channel, version)
            )
            """,
            """
            CREATE TABLE pending_writes (
                run_id text NOT NULL,
                ns text NOT NULL DEFAULT '',
                checkpoint_id text NOT NULL,
                task_id text NOT NULL,
                idx bigint NOT NULL,
                channel text NOT NULL,
                codec smallint NOT NULL,
                sha256 bytea NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (run_id, ns, checkpoint_id, task_id, idx)
            )
            """,
            """
            CREATE TABLE attempts (
                run_id text NOT NULL,
                step bigint NOT NULL,
                task_id text NOT NULL,
                attempt bigint NOT NULL CHECK (attempt >= 1),
                status text NOT NULL CHECK (status IN ('completed','failed','lost','stale')),
                node text NOT NULL,
                worker text NOT NULL,
                queued_at double precision,
                started_at double precision NOT NULL,
                finished_at double precision NOT NULL,
                duration_ms double precision NOT NULL,
                error text,
                error_kind text,
                cost double precision NOT NULL DEFAULT 0,
                api_calls bigint NOT NULL DEFAULT 0,
                tokens_in bigint NOT NULL DEFAULT 0,
                tokens_out bigint NOT NULL DEFAULT 0,
                metrics text,
                PRIMARY KEY (run_id, step, task_id, attempt, status)
            )
            """,
            """
            CREATE TABLE api_calls (
                run_id text NOT NULL,
                step bigint NOT NULL,
                task_id text NOT NULL,
                attempt bigint NOT NULL,
                status text NOT NULL,
                idx bigint NOT NULL,
                node text NOT NULL,
                provider text NOT NULL,
                model text NOT NULL,
                operation text NOT NULL,
                tokens_in bigint NOT NULL,
                tokens_out bigint NOT NULL,
                cost double precision NOT NULL,
                latency_ms double precision NOT NULL,
                call_status text NOT NULL,
                at double precision NOT NULL,
                PRIMARY KEY (run_id, step, task_id, attempt, status, idx)
            )
            """,
            """
            CREATE TABLE assets (
                run_id text NOT NULL,
                step bigint NOT NULL,
                task_id text NOT NULL,
                attempt bigint NOT NULL,
                status text NOT NULL,
                idx bigint NOT NULL,
                node text NOT NULL,
                name text NOT NULL,
                kind text NOT NULL,
                uri text NOT NULL,
                bytes bigint,
                sha256 text,
                meta text,
                created_at double precision NOT NULL,
                PRIMARY KEY (run_id, step, task_id, attempt, status, idx)
            )
            """,
            "CREATE INDEX assets_by_uri ON assets(uri)",
            """
            CREATE TABLE workers (
                worker_id text PRIMARY KEY,
                name text NOT NULL,
                slots bigint NOT NULL CHECK (slots >= 1),
                kinds text NOT NULL,
                address text NOT NULL,
                connected_at double precision NOT NULL,
                last_seen double precision NOT NULL,
                disconnected_at double precision,
                tasks_done bigint NOT NULL DEFAULT 0
            )
            """,
            // SQLite's round(real, digits), so the records queries read the same on both stores.
            """
            CREATE OR REPLACE FUNCTION round(x double precision, digits integer) RETURNS double precision
                LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT round(x::numeric, digits)::double precision $$
            """,
            """
            CREATE VIEW attempt_details AS
            SELECT a.run_id, r.graph_name, r.graph_version, a.step, a.node, a.task_id, a.attempt, a.status, a.worker,
                   a.queued_at, a.started_at, a.finished_at,
                   CASE WHEN a.queued_at IS NULL THEN NULL ELSE round(greatest(0, a.started_at - a.queued_at) * 1000.0, 3) END AS queue_ms,
                   a.duration_ms, a.error_kind, a.error, a.cost, a.api_calls, a.tokens_in, a.tokens_out, a.metrics,
                   to_char(to_timestamp(a.started_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
            FROM attempts a JOIN runs r ON r.run_id = a.run_id
            """,
            """
            CREATE VIEW api_call_details AS
            SELECT c.run_id, r.graph_name, c.step, c.node, c.task_id, c.attempt, c.status AS attempt_status, c.idx,
                   c.provider, c.model, c.operation, c.tokens_in, c.tokens_out, c.cost, c.latency_ms, c.call_status, c.at,
                   to_char(to_timestamp(c.at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day
            FROM api_calls c JOIN runs r ON r.run_id = c.run_id
            """,
            """
            CREATE VIEW failed_runs AS
            WITH f AS (
                SELECT a.*, ROW_NUMBER() OVER (PARTITION BY a.run_id ORDER BY a.finished_at DESC) AS latest,
                       COUNT(*) OVER (PARTITION BY a.run_id, a.task_id) AS task_attempts
                FROM attempts a
                WHERE a.status IN ('failed', 'lost') AND a.run_id IN (SELECT run_id FROM runs WHERE status = 'failed'))
            SELECT r.run_id, r.graph_name, r.graph_version, r.created_at, r.finished_at, r.error AS run_error,
                   f.node AS failing_node, f.step, f.task_id, f.task_attempts AS attempts, f.worker, f.error_kind, f.error
            FROM runs r LEFT JOIN f ON f.run_id = r.run_id AND f.latest = 1
            WHERE r.status = 'failed'
            """,
            """
            CREATE VIEW waiting_runs AS
            SELECT run_id, graph_name, graph_version, step, updated_at AS waiting_since,
                   round(extract(epoch FROM now())::double precision - updated_at, 1) AS waited_s,
                   resume_count, convert_from(interrupt, 'UTF8') AS interrupt
            FROM runs WHERE status = 'paused'
            """,
            """
            CREATE VIEW worker_tasks AS
            SELECT worker, COUNT(*) FILTER (WHERE status = 'completed') AS done, COUNT(*) FILTER (WHERE status = 'failed') AS failed,
                   COUNT(*) FILTER (WHERE status = 'lost') AS lost, COUNT(*) FILTER (WHERE status = 'stale') AS stale,
                   COUNT(*) AS attempts, round(SUM(duration_ms) / 1000.0, 3) AS busy_s,
                   MIN(started_at) AS first_at, MAX(finished_at) AS last_at
            FROM attempts GROUP BY worker
            """,
        ]),
        // Which coordinator leads (standby coordinators on one database): one row, its epoch
        // raised by every claim, its lease on the server's clock.
        ("v2-leader", [
            """
            CREATE TABLE cairn_leader (
                id smallint PRIMARY KEY CHECK (id = 1),
                epoch bigint NOT NULL,
                holder text NOT NULL,
                address text NOT NULL,
                http text NOT NULL,
                lease_until timestamptz NOT NULL,
                changed_at timestamptz NOT NULL
            )
            """,
            "INSERT INTO cairn_leader VALUES (1, 0, '', '', '', to_timestamp(0), now())",
        ]),
    ]
}
