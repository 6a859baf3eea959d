-- raw and ops: the tables the loader and the pusher own. Idempotent (safe to apply on every `warehouse up`).
-- staging/intermediate/marts belong to dbt. Column meanings: docs/data-contracts.md.

create schema if not exists raw;
create schema if not exists ops;
create schema if not exists staging;
create schema if not exists intermediate;
create schema if not exists marts;
-- a funnel definition's backtest (`handoff funnel backtest`): the candidate's models, apart from production
create schema if not exists backtest;

-- CRM objects: one append-only table per object type, the object kept whole as jsonb.
do $$
declare
    obj text;
begin
    foreach obj in array array['owners', 'companies', 'contacts', 'deals', 'meetings', 'calls', 'tasks'] loop
        execute format($f$
            create table if not exists raw.%I (
                _batch_id   uuid        not null,
                _loaded_at  timestamptz not null,
                _source     text        not null,
                record_id   text        not null,
                updated_at  timestamptz,
                archived    boolean     not null default false,
                record      jsonb       not null
            )$f$, 'crm_' || obj);
        execute format('create index if not exists %I on raw.%I (record_id, updated_at)',
                       'crm_' || obj || '_record_idx', 'crm_' || obj);
    end loop;
end
$$;

create table if not exists raw.analytics_events (
    _batch_id    uuid        not null,
    _loaded_at   timestamptz not null,
    _source      text        not null,
    _line        bigint      not null,
    message_id   text        not null,
    event_type   text        not null,
    event_name   text,
    anonymous_id text,
    user_id      text,
    event_at     timestamptz not null,
    received_at  timestamptz not null,
    record       jsonb       not null
);
create index if not exists analytics_events_received_idx on raw.analytics_events (received_at);
-- staging reads the batches it does not hold yet (stg_analytics__events, incremental by batch)
create index if not exists analytics_events_batch_idx on raw.analytics_events (_batch_id);
-- `dbt source freshness` (the daily run's check before dbt) asks max(_loaded_at): without this index it read the
-- whole table, 13 GB and 8.3 s at 100,000 contacts x 180 days, growing with the history. One value per load
-- batch, appended at the index's right edge (and deduplicated): cheap to keep up on load.
create index if not exists analytics_events_loaded_idx on raw.analytics_events (_loaded_at);

create table if not exists raw.quarantine (
    _batch_id   uuid        not null,
    _loaded_at  timestamptz not null,
    _source     text        not null,
    _line       bigint,
    record_ref  text,
    raw_text    text,
    reason      text        not null
);

create table if not exists ops.load_log (
    batch_id            uuid primary key,
    source              text        not null,
    source_kind         text        not null,
    data_interval_start timestamptz,
    data_interval_end   timestamptz,
    started_at          timestamptz not null,
    finished_at         timestamptz,
    rows_read           bigint      not null default 0,
    rows_loaded         bigint      not null default 0,
    rows_quarantined    bigint      not null default 0,
    status              text        not null,
    error               text,
    sha256              text,  -- the file's checksum for file batches (also for rejected ones), else null
    constraint load_log_counts_reconcile check (status <> 'loaded' or rows_read = rows_loaded + rows_quarantined)
);

alter table ops.load_log add column if not exists sha256 text;
create index if not exists load_log_sha256_idx on ops.load_log (sha256) where sha256 is not null;

create table if not exists ops.file_ledger (
    sha256      text primary key,
    path        text        not null,
    size_bytes  bigint      not null,
    file_date   date,
    batch_id    uuid        not null references ops.load_log (batch_id),
    loaded_at   timestamptz not null
);
-- an analytics file's path under the landing folder (= ops.landing_files.relative_path): which landing file these
-- bytes were loaded as, wherever the worker that loaded it mounted the folder; null for CRM exports and for files
-- ledgered before this column (those are matched by path)
alter table ops.file_ledger add column if not exists relative_path text;
create index if not exists file_ledger_relative_path_idx on ops.file_ledger (relative_path)
    where relative_path is not null;

-- Every file the analytics loader saw under its landing folder, with what became of it: one row per file (its
-- path relative to the landing folder, so workers that mount the folder at different places agree on which file
-- it is; the sha256 ledger makes loads exactly-once), written when the outcome is decided and rewritten only when it changes (a rerun that finds a loaded file
-- loaded again writes nothing). Files still skipped or rejected get last_seen_at moved on by every run that sees
-- them, so "what did this run leave out" is `last_seen_at >= <run start> and outcome in ('skipped', 'rejected')`.
create table if not exists ops.landing_files (
    path             text        not null,     -- absolute, as the run that last wrote the row saw it (for a loaded
                                               -- file = ops.load_log.source, ops.file_ledger.path, raw _source)
    relative_path    text        primary key,  -- under the landing folder: the file's identity
    source_kind      text        not null,     -- analytics_file
    file_date        date,                     -- from its YYYY-MM-DD/ or Segment <day-as-unix-ms>/ folder
    outcome          text        not null,     -- loaded, loaded_with_quarantine, rejected, skipped
    reason           text,                     -- why (null for a clean load)
    sha256           text,                     -- of the bytes the outcome is about (null when never read)
    size_bytes       bigint,
    batch_id         uuid,                     -- the ops.load_log batch (loaded, or rejected for bad lines)
    rows_read        bigint      not null default 0,
    rows_loaded      bigint      not null default 0,
    rows_quarantined bigint      not null default 0,
    first_seen_at    timestamptz not null,
    outcome_at       timestamptz not null,     -- when this outcome was decided
    last_seen_at     timestamptz not null,     -- the latest run that saw the file (moved on while skipped/rejected)
    constraint landing_files_outcome check (outcome in ('loaded', 'loaded_with_quarantine', 'rejected', 'skipped')),
    constraint landing_files_counts_reconcile
        check (outcome not in ('loaded', 'loaded_with_quarantine') or rows_read = rows_loaded + rows_quarantined)
);
create index if not exists landing_files_open_idx on ops.landing_files (last_seen_at)
    where outcome in ('rejected', 'skipped');

-- From the earlier layout, keyed by the absolute path: a worker that mounted the landing folder elsewhere gave
-- a loaded file a second row ('skipped: same bytes as /other/mount/...'). Done once, when the key is still `path`:
-- the ledger's relative_path is filled in from the loaded rows; then one row is kept per relative path (a loaded
-- one first, else the latest outcome; first_seen_at/last_seen_at span the rows merged) and it becomes the key.
do $$
declare
    old_key text;
begin
    select c.conname into old_key
    from pg_constraint c join pg_attribute a on a.attrelid = c.conrelid and a.attnum = any (c.conkey)
    where c.conrelid = 'ops.landing_files'::regclass and c.contype = 'p' and a.attname = 'path';
    if old_key is not null then
        lock table ops.landing_files in access exclusive mode;
        lock table ops.file_ledger in share row exclusive mode;
        update ops.file_ledger l set relative_path = f.relative_path
        from ops.landing_files f
        where l.relative_path is null and f.batch_id = l.batch_id and f.sha256 = l.sha256
          and f.outcome in ('loaded', 'loaded_with_quarantine');
        update ops.landing_files f set first_seen_at = g.first_seen_at, last_seen_at = g.last_seen_at
        from (select relative_path, min(first_seen_at) as first_seen_at, max(last_seen_at) as last_seen_at
              from ops.landing_files group by relative_path having count(*) > 1) g
        where f.relative_path = g.relative_path;
        delete from ops.landing_files where ctid in (
            select ctid from (
                select ctid, row_number() over (
                    partition by relative_path
                    order by outcome in ('loaded', 'loaded_with_quarantine') desc, outcome_at desc, path) as n
                from ops.landing_files) ranked
            where n > 1);
        execute format('alter table ops.landing_files drop constraint %I', old_key);
        alter table ops.landing_files add constraint landing_files_pkey primary key (relative_path);
    end if;
end
$$;

create table if not exists ops.crm_watermarks (
    object_type text primary key,
    watermark   timestamptz not null,
    batch_id    uuid        not null,
    updated_at  timestamptz not null
);

-- The push's audit trail (plugins/handoff/push): one row per attempt per queue row and action, written as
-- 'sent' BEFORE the CRM call and completed with the outcome after it. A 'sent' row that never got an
-- outcome (the run died in between) is settled to 'unknown' by the next run, which then looks the task up
-- by handoff_dedupe_key before creating it again.
create table if not exists ops.crm_push_log (
    push_id         bigserial primary key,
    run_id          text        not null,
    contact_id      text        not null,
    sql_at          timestamptz not null,
    dedupe_key      text        not null,
    action          text        not null,  -- check_lifecycle, update_contact, find_task, create_task, readback
    attempt         int         not null,  -- 1, 2, ... per (dedupe_key, action), counted across runs
    status          text        not null,  -- sent, succeeded, failed, unknown, parked, skipped, mismatch
    crm_object_id   text,
    http_status     int,
    reason          text,
    attempted_at    timestamptz not null default clock_timestamp(),
    crm_contact_id  text,
    finished_at     timestamptz,           -- when the outcome was recorded
    detail          jsonb                  -- readback mismatches: {property: {sent, read}}
);
create index if not exists crm_push_log_key_idx on ops.crm_push_log (dedupe_key, action, status);
create index if not exists crm_push_log_open_idx on ops.crm_push_log (push_id) where status = 'sent';
-- at most one task acknowledged per SQL: a bug that would record a second one fails loudly instead
create unique index if not exists crm_push_log_one_task_idx on ops.crm_push_log (dedupe_key)
    where action = 'create_task' and status = 'succeeded';

-- The acknowledgement contract (docs/architecture.md, "Mart contracts": one row per new SQL not yet acknowledged by
-- the CRM): an SQL is acknowledged once it has a succeeded create_task row (its task exists in the CRM), or a
-- parked or skipped row (it never will: deleted contact, invalid owner, validation error, attempts exhausted, or a
-- contact the CRM already has at opportunity or later). marts.sql_handoff_queue excludes these dedupe_keys.
create or replace view ops.crm_push_acknowledged as
select distinct on (dedupe_key)
    dedupe_key,
    contact_id,
    coalesce(finished_at, attempted_at) as acknowledged_at,
    status                              as outcome,
    action,
    crm_object_id,
    reason
from ops.crm_push_log
where (action = 'create_task' and status = 'succeeded') or status in ('parked', 'skipped')
order by dedupe_key, push_id;

create table if not exists ops.crm_push_preview (
    run_id        text        not null,
    contact_id    text        not null,
    dedupe_key    text        not null,
    action        text        not null,  -- create, update, skip
    reason        text,
    payload       jsonb,
    previewed_at  timestamptz not null default clock_timestamp(),
    crm_contact_id text,
    sql_at        timestamptz
);
create index if not exists crm_push_preview_run_idx on ops.crm_push_preview (run_id);
