# ruff: noqa: E501
"""The schema of a new index at head, as Alembic's migrations leave it. GENERATED: do not edit.

Regenerate after adding a revision:
    python -c "from fleetbox_db.index import schema; schema.write_snapshot()"
    ruff format fleetbox_db/index/head.py
(tests/test_head_schema.py fails until it is; until then new indexes go through Alembic).
"""

from typing import Final

REVISION: Final = "fleetbox_0011"
#: Pragmas of the file itself, set before the first table.
FILE_PRAGMAS: Final = (("page_size", 4096), ("auto_vacuum", 0), ("encoding", "UTF-8"))
PRAGMAS: Final = (("application_id", 1178753092), ("user_version", 0))
#: sqlite_master's SQL in creation order (automatic indexes are made by their tables).
STATEMENTS: Final = (
    (
        "CREATE TABLE alembic_version (\n"
        "\tversion_num VARCHAR(32) NOT NULL, \n"
        "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n"
        ")"
    ),
    (
        "CREATE TABLE members (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tcluster TEXT NOT NULL, \n"
        "\tname TEXT NOT NULL, \n"
        "\tstate VARCHAR(16) NOT NULL, \n"
        "\tino INTEGER, \n"
        "\tsize INTEGER, \n"
        "\tmtime_ns INTEGER, \n"
        "\tctime_ns INTEGER, \n"
        "\tverified_ns INTEGER, \n"
        "\tdigest VARCHAR(32), \n"
        "\tconfig_name TEXT, \n"
        "\tmac TEXT, \n"
        "\tmac_key TEXT, \n"
        "\tcpus INTEGER, \n"
        "\tmemory_mb INTEGER, \n"
        "\tdisk_mb INTEGER, \n"
        "\timage TEXT, \n"
        "\tcreated_at TEXT, \n"
        "\tip TEXT, \n"
        "\tip_int INTEGER, \n"
        "\textra TEXT, spelling TEXT, reason TEXT, seq INTEGER DEFAULT 0 NOT NULL, \n"
        "\tCONSTRAINT pk_members PRIMARY KEY (id), \n"
        "\tCONSTRAINT ck_members_member_state CHECK (state IN ('ok', 'configless', 'unreadable', 'stray'))\n"
        ")"
    ),
    ("CREATE UNIQUE INDEX ix_members_cluster_name ON members (cluster, name)"),
    ("CREATE INDEX ix_members_name ON members (name)"),
    ("CREATE INDEX ix_members_ip_int ON members (ip_int)"),
    ("CREATE INDEX ix_members_mac_key ON members (mac_key)"),
    (
        "CREATE TABLE fixtures (\n"
        "\tmember_id INTEGER NOT NULL, \n"
        "\tposition INTEGER NOT NULL, \n"
        "\thost_path TEXT NOT NULL, \n"
        "\tguest_path TEXT NOT NULL, \n"
        "\tlabel TEXT NOT NULL, \n"
        "\textra TEXT, \n"
        "\tCONSTRAINT pk_fixtures PRIMARY KEY (member_id, position), \n"
        "\tCONSTRAINT fk_fixtures_member_id_members FOREIGN KEY(member_id) REFERENCES members (id) ON DELETE CASCADE\n"
        ")"
    ),
    (
        "CREATE TABLE reservations (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tname TEXT NOT NULL, \n"
        "\tsubnet TEXT NOT NULL, \n"
        "\tip_int INTEGER NOT NULL, \n"
        "\towner_pid INTEGER NOT NULL, \n"
        "\towner_boot TEXT NOT NULL, \n"
        "\towner_start INTEGER NOT NULL, \n"
        "\tcreated_ns INTEGER NOT NULL, \n"
        "\tCONSTRAINT pk_reservations PRIMARY KEY (id)\n"
        ")"
    ),
    ("CREATE UNIQUE INDEX ix_reservations_ip_int ON reservations (ip_int)"),
    (
        "CREATE TABLE history_meta (\n"
        "\tid INTEGER NOT NULL, \n"
        "\trecording INTEGER NOT NULL, \n"
        "\tmax_events INTEGER NOT NULL, \n"
        "\treason TEXT NOT NULL, \n"
        "\tCONSTRAINT pk_history_meta PRIMARY KEY (id), \n"
        "\tCONSTRAINT ck_history_meta_one_row CHECK (id = 1)\n"
        ")"
    ),
    (
        "CREATE TABLE history (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tat_ns INTEGER NOT NULL, \n"
        "\tcluster TEXT, \n"
        "\tname TEXT, \n"
        "\tkind VARCHAR(32) NOT NULL, \n"
        "\tactor TEXT, \n"
        "\tfields TEXT, \n"
        "\tip TEXT, \n"
        "\tdetail TEXT, \n"
        "\tCONSTRAINT pk_history PRIMARY KEY (id)\n"
        ")"
    ),
    ("CREATE INDEX ix_history_name ON history (name)"),
    ("CREATE INDEX ix_history_ip ON history (ip)"),
    ("CREATE INDEX ix_history_unattributed ON history (id) WHERE actor IS NULL"),
    (
        "CREATE TABLE history_touched (\n"
        "\tcluster TEXT NOT NULL, \n"
        "\tname TEXT NOT NULL, \n"
        "\told TEXT, \n"
        "\tCONSTRAINT pk_history_touched PRIMARY KEY (cluster, name)\n"
        ")"
    ),
    (
        "CREATE TRIGGER history_member_insert \n"
        "        AFTER INSERT ON members WHEN (SELECT recording FROM history_meta WHERE id = 1)\n"
        "        BEGIN INSERT OR IGNORE INTO history_touched (cluster, name, old)\n"
        "              VALUES (new.cluster, new.name, NULL); END"
    ),
    (
        "CREATE TRIGGER history_member_update \n"
        "        BEFORE UPDATE ON members\n"
        "        WHEN (old.state IS NOT new.state OR old.digest IS NOT new.digest\n"
        "              OR old.config_name IS NOT new.config_name) AND (SELECT recording FROM history_meta WHERE id = 1)\n"
        "        BEGIN INSERT OR IGNORE INTO history_touched (cluster, name, old)\n"
        "              VALUES (old.cluster, old.name, json_object('state', old.state, 'config', old.config_name IS NOT NULL, 'ip', old.ip, 'ip_int', old.ip_int, 'mac', old.mac, 'mac_key', old.mac_key, 'cpus', old.cpus, 'memory_mb', old.memory_mb, 'disk_mb', old.disk_mb, 'image', old.image, 'created_at', old.created_at, 'extra', old.extra, 'fixtures', (SELECT json_group_array(json_array(host_path, guest_path, label, extra)) FROM (SELECT * FROM fixtures WHERE member_id = old.id ORDER BY position)))); END"
    ),
    (
        "CREATE TRIGGER history_member_delete \n"
        "        BEFORE DELETE ON members WHEN (SELECT recording FROM history_meta WHERE id = 1)\n"
        "        BEGIN INSERT OR IGNORE INTO history_touched (cluster, name, old)\n"
        "              VALUES (old.cluster, old.name, json_object('state', old.state, 'config', old.config_name IS NOT NULL, 'ip', old.ip, 'ip_int', old.ip_int, 'mac', old.mac, 'mac_key', old.mac_key, 'cpus', old.cpus, 'memory_mb', old.memory_mb, 'disk_mb', old.disk_mb, 'image', old.image, 'created_at', old.created_at, 'extra', old.extra, 'fixtures', (SELECT json_group_array(json_array(host_path, guest_path, label, extra)) FROM (SELECT * FROM fixtures WHERE member_id = old.id ORDER BY position)))); END"
    ),
    (
        "CREATE TRIGGER history_reservation_insert \n"
        "        AFTER INSERT ON reservations WHEN (SELECT recording FROM history_meta WHERE id = 1)\n"
        "        BEGIN INSERT INTO history (at_ns, name, kind, fields, ip)\n"
        "              VALUES (CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER), new.name, 'ip-reserved',\n"
        "                      json_object('subnet', new.subnet), ((new.ip_int >> 24) & 255) || '.' || ((new.ip_int >> 16) & 255) || '.' || ((new.ip_int >> 8) & 255) || '.' || (new.ip_int & 255)); END"
    ),
    (
        "CREATE TRIGGER history_reservation_delete \n"
        "        AFTER DELETE ON reservations WHEN (SELECT recording FROM history_meta WHERE id = 1)\n"
        "        BEGIN INSERT INTO history (at_ns, name, kind, fields, ip)\n"
        "              VALUES (CAST((julianday('now') - 2440587.5) * 86400000000000 AS INTEGER), old.name, 'reservation-released',\n"
        "                      json_object('subnet', old.subnet), ((old.ip_int >> 24) & 255) || '.' || ((old.ip_int >> 16) & 255) || '.' || ((old.ip_int >> 8) & 255) || '.' || (old.ip_int & 255)); END"
    ),
    (
        "CREATE VIEW api_vms AS \n"
        "        SELECT m.cluster AS cluster, m.name AS name, CASE WHEN m.state = 'ok' AND (\n"
        "                 EXISTS (SELECT 1 FROM members o WHERE o.ip_int = m.ip_int AND o.id != m.id)\n"
        "                 OR EXISTS (SELECT 1 FROM members o WHERE o.mac_key = m.mac_key\n"
        "                            AND o.id != m.id)) THEN 'conflict' ELSE m.state END AS state,\n"
        "               m.mac AS mac, m.cpus AS cpus, m.memory_mb AS memory_mb, m.disk_mb AS disk_mb,\n"
        "               m.image AS image, m.created_at AS created_at, nullif(m.ip, '') AS ip,\n"
        "               (SELECT count(*) FROM fixtures f WHERE f.member_id = m.id) AS fixtures,\n"
        "               m.extra AS extra\n"
        "        FROM members m"
    ),
    (
        "CREATE VIEW api_fixtures AS \n"
        "        SELECT m.cluster AS cluster, m.name AS name, f.position AS position,\n"
        "               f.host_path AS host_path, f.guest_path AS guest_path, f.label AS label\n"
        "        FROM fixtures f JOIN members m ON m.id = f.member_id"
    ),
    (
        "CREATE VIEW api_addresses AS \n"
        "        SELECT 'ip' AS kind, ip AS value, cluster, name, 'config' AS source\n"
        "          FROM members WHERE ip_int IS NOT NULL\n"
        "        UNION ALL\n"
        "        SELECT 'mac', mac, cluster, name, 'config' FROM members WHERE mac_key IS NOT NULL\n"
        "        UNION ALL\n"
        "        SELECT 'ip', ((ip_int >> 24) & 255) || '.' || ((ip_int >> 16) & 255) || '.' || ((ip_int >> 8) & 255) || '.' || (ip_int & 255), NULL, name, 'reservation' FROM reservations"
    ),
    (
        "CREATE VIEW api_reservations AS \n"
        "        SELECT name, subnet, ((ip_int >> 24) & 255) || '.' || ((ip_int >> 16) & 255) || '.' || ((ip_int >> 8) & 255) || '.' || (ip_int & 255) AS ip, nullif(owner_pid, 0) AS owner_pid,\n"
        "               CASE WHEN created_ns > 0 THEN strftime('%Y-%m-%dT%H:%M:%fZ',\n"
        "                    created_ns / 1e9, 'unixepoch') END AS created_at\n"
        "        FROM reservations"
    ),
    (
        "CREATE VIEW api_events AS \n"
        "        SELECT id, strftime('%Y-%m-%dT%H:%M:%fZ', at_ns / 1e9, 'unixepoch') AS at, at_ns,\n"
        "               cluster, name, kind, actor AS who, fields, ip, detail\n"
        "        FROM history"
    ),
    (
        "CREATE VIEW api_problems AS \n"
        "        SELECT 'conflict' AS kind, 'ip' AS what, ip AS value, cluster, name FROM members\n"
        "          WHERE ip_int IN (SELECT ip_int FROM members WHERE ip_int IS NOT NULL\n"
        "                           GROUP BY ip_int HAVING count(*) > 1)\n"
        "        UNION ALL\n"
        "        SELECT 'conflict', 'mac', mac, cluster, name FROM members\n"
        "          WHERE mac_key IN (SELECT mac_key FROM members WHERE mac_key IS NOT NULL\n"
        "                            GROUP BY mac_key HAVING count(*) > 1)\n"
        "        UNION ALL\n"
        "        SELECT state, 'state', NULL, cluster, name FROM members\n"
        "          WHERE state IN ('unreadable', 'stray')"
    ),
    ("CREATE INDEX ix_members_seq ON members (seq)"),
    (
        "CREATE TABLE member_seq (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tvalue INTEGER NOT NULL, \n"
        "\tkept_removals INTEGER NOT NULL, reservations INTEGER DEFAULT 0 NOT NULL, settled_seq INTEGER, settled_digest BLOB, \n"
        "\tCONSTRAINT pk_member_seq PRIMARY KEY (id), \n"
        "\tCONSTRAINT ck_member_seq_one_row CHECK (id = 1)\n"
        ")"
    ),
    (
        "CREATE TABLE member_removals (\n"
        "\tseq INTEGER NOT NULL, \n"
        "\tcluster TEXT NOT NULL, \n"
        "\tname TEXT NOT NULL\n"
        ")"
    ),
    ("CREATE INDEX ix_member_removals_seq ON member_removals (seq)"),
    (
        "CREATE TRIGGER member_seq_insert AFTER INSERT ON members BEGIN UPDATE member_seq SET value = value + 1 WHERE id = 1; UPDATE members SET seq = (SELECT value FROM member_seq WHERE id = 1) WHERE id = new.id; END"
    ),
    (
        "CREATE TRIGGER member_seq_update \n"
        "        AFTER UPDATE OF id, cluster, name, state, ino, size, mtime_ns, ctime_ns, verified_ns, digest, reason, config_name, mac, mac_key, cpus, memory_mb, disk_mb, image, created_at, ip, ip_int, extra, spelling ON members BEGIN UPDATE member_seq SET value = value + 1 WHERE id = 1; UPDATE members SET seq = (SELECT value FROM member_seq WHERE id = 1) WHERE id = new.id;\n"
        "        INSERT INTO member_removals (seq, cluster, name)\n"
        "            SELECT value, old.cluster, old.name FROM member_seq\n"
        "            WHERE id = 1 AND (old.cluster IS NOT new.cluster OR old.name IS NOT new.name);\n"
        "        END"
    ),
    (
        "CREATE TRIGGER member_seq_delete \n"
        "        AFTER DELETE ON members BEGIN UPDATE member_seq SET value = value + 1 WHERE id = 1;\n"
        "        INSERT INTO member_removals (seq, cluster, name)\n"
        "            VALUES ((SELECT value FROM member_seq WHERE id = 1), old.cluster, old.name);\n"
        "        DELETE FROM member_removals WHERE seq <=\n"
        "            (SELECT value - kept_removals FROM member_seq WHERE id = 1); END"
    ),
    ("CREATE INDEX ix_reservations_name_subnet ON reservations (name, subnet)"),
    (
        "CREATE TRIGGER reservation_seq_insert AFTER INSERT ON reservations BEGIN UPDATE member_seq SET reservations = reservations + 1 WHERE id = 1; END"
    ),
    (
        "CREATE TRIGGER reservation_seq_update AFTER UPDATE ON reservations BEGIN UPDATE member_seq SET reservations = reservations + 1 WHERE id = 1; END"
    ),
    (
        "CREATE TRIGGER reservation_seq_delete AFTER DELETE ON reservations BEGIN UPDATE member_seq SET reservations = reservations + 1 WHERE id = 1; END"
    ),
    (
        "CREATE TABLE vm_records (\n"
        "\tid INTEGER NOT NULL, \n"
        "\tseq INTEGER NOT NULL, \n"
        "\tblob BLOB NOT NULL, \n"
        "\tCONSTRAINT pk_vm_records PRIMARY KEY (id)\n"
        ")"
    ),
)
#: The rows the migrations insert into a new file, as (statement, values).
ROWS: Final[tuple[tuple[str, tuple[object, ...]], ...]] = (
    (
        'INSERT INTO "history_meta" VALUES (?, ?, ?, ?)',
        (1, 0, 100000, "a new index was built from disk (none was found: first use, or deleted)"),
    ),
    ('INSERT INTO "member_seq" VALUES (?, ?, ?, ?, ?, ?)', (1, 0, 10000, 0, None, None)),
)
