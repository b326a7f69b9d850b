"""Each incident keeps its API list row as JSON text, kept right by PostgreSQL triggers.

The API incident list builds its rows as JSON in the page query (``incidents.api.rows``). Most
of that statement's time went to building each row: a JSON object of some thirty fields, eleven
formatted date-times, and two subqueries per row for the service slugs and the role holders.
Here the parts of the row that do not depend on the time of the request are kept on the
incident itself, in two columns the page query reads as they are:

* ``api_head``: the row from ``id`` up to and including ``updated_at`` (services and the
  duplicate's ID included), as ``json_build_object(...)::text`` writes it, without its
  closing brace;
* ``api_roles``: the ``roles`` object (role key → holder).

The ``sla`` object stays computed per request: whether a target is breached depends on "now".

A trigger before every insert and update of an incident writes both columns from the row being
written, so every way of changing an incident (``save()``, ``QuerySet.update()``, raw SQL)
keeps them right. Changes elsewhere that show in a row mark the incidents concerned (an update
that sets ``api_head`` to NULL, which the trigger fills again): a service linked or unlinked, a
role assigned, changed or unassigned, a service's slug or name (the order of the slugs), a
role's key or position, a user's username or name. Django's ``TRUNCATE`` (test flushes)
fires no trigger and needs none.

PostgreSQL only: on other databases the list is built by the serializer and nothing here
applies. The columns are not part of the model's state (they exist on one database only), so
Django never selects them and ``makemigrations`` sees no change. A field added to the list's
rows needs a migration that replaces ``vigil_incident_api_row()`` and refreshes every row
(``UPDATE ... SET api_head = NULL``); ``tests/incidents/test_api_list_rows_pg.py`` fails until
it does.
"""

from django.conf import settings
from django.db import migrations

# (status, report status): incidents.models.REPORT_STATUS when this was written.
REPORT_STATUS = (
    ("open", "Open"),
    ("acknowledged", "In Progress"),
    ("investigating", "In Progress"),
    ("mitigating", "In Progress"),
    ("monitoring", "In Progress"),
    ("resolved", "Resolved"),
    ("closed", "Closed"),
    ("cancelled", "Closed"),
)
TIMES = (
    "impact_started_at",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "cancelled_at",
    "created_at",
    "updated_at",
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _iso(column: str) -> str:
    # As incidents.api.rows._iso: seconds always, microseconds only when there are any, "Z".
    return (
        f"replace(to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
        "'.000000Z', 'Z')"
    )


def _marking(
    incident: str, name: str, table: str, through: str, column: str, shown: tuple[str, ...]
) -> list[str]:
    """A function and a trigger after an update of ``table`` that changes one of the ``shown``
    columns: every incident that ``through`` links to the row (by ``column``) is marked, and
    the incidents' own trigger writes their rows again."""
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in shown)
    return [
        f"""CREATE OR REPLACE FUNCTION vigil_incident_api_{name}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {incident} SET api_head = NULL
    WHERE id IN (SELECT incident_id FROM {through} WHERE {column} = NEW.id);
    RETURN NULL;
END
$$""",
        f"""CREATE TRIGGER incident_api_{name} AFTER UPDATE ON {table} FOR EACH ROW
WHEN ({changed}) EXECUTE FUNCTION vigil_incident_api_{name}()""",
    ]


def _statements(apps, q) -> tuple[list[str], list[str]]:
    """(forwards, backwards) SQL, with the tables' names as the models name them."""
    incident = q(apps.get_model("incidents", "Incident")._meta.db_table)
    links = q(apps.get_model("incidents", "Incident").services.through._meta.db_table)
    service = q(apps.get_model("incidents", "Service")._meta.db_table)
    assignment = q(apps.get_model("incidents", "RoleAssignment")._meta.db_table)
    role = q(apps.get_model("incidents", "ResponseRole")._meta.db_table)
    user = q(apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table)

    report_status = (
        "CASE NEW.status "
        + " ".join(f"WHEN {_literal(s)} THEN {_literal(r)}" for s, r in REPORT_STATUS)
        + " END"
    )
    services = (
        "(SELECT COALESCE(json_agg(s.slug ORDER BY s.name, s.id), '[]'::json) "
        f"FROM {links} l JOIN {service} s ON s.id = l.service_id WHERE l.incident_id = NEW.id)"
    )
    duplicate = f"(SELECT d.number FROM {incident} d WHERE d.id = NEW.duplicate_of_id)"
    # user_ref: the full name ("first last", stripped), else the username.
    roles = (
        "(SELECT COALESCE(json_object_agg(r.key, json_build_object("
        "'id', u.id, 'username', u.username, 'name', "
        "COALESCE(NULLIF(btrim(u.first_name || ' ' || u.last_name, E' \\t\\n\\r\\f\\v'), ''), "
        "u.username)) ORDER BY r.position, r.id), '{}'::json) "
        f"FROM {assignment} a JOIN {role} r ON r.id = a.role_id JOIN {user} u ON u.id = a.user_id "
        "WHERE a.incident_id = NEW.id)::text"
    )
    fields = [
        ("id", "NEW.number"),
        ("title", "NEW.title"),
        ("summary", "NEW.summary"),
        ("severity", "NEW.severity_id"),
        ("impact", "NEW.impact"),
        ("urgency", "NEW.urgency"),
        ("priority", "NEW.priority"),
        ("status", "NEW.status"),
        ("report_status", report_status),
        ("detection_source", "NEW.detection_source"),
        ("services", services),
        ("customer_facing", "NEW.customer_facing"),
        ("affected_users", "NEW.affected_users"),
        ("business_impact", "NEW.business_impact"),
        ("root_cause", "NEW.root_cause"),
        ("resolution", "NEW.resolution"),
        ("lessons_learned", "NEW.lessons_learned"),
        ("cancel_reason", "NEW.cancel_reason"),
        ("duplicate_of", duplicate),
        *((name, _iso(f"NEW.{name}")) for name in TIMES),
    ]
    head = ",\n        ".join(f"'{name}', {expression}" for name, expression in fields)

    forwards = [
        f"ALTER TABLE {incident} ADD COLUMN api_head text, ADD COLUMN api_roles text",
        f"""CREATE OR REPLACE FUNCTION vigil_incident_api_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.api_head := left(json_build_object(
        {head}
    )::text, -1);
    NEW.api_roles := {roles};
    RETURN NEW;
END
$$""",
        f"""CREATE TRIGGER incident_api_row BEFORE INSERT OR UPDATE ON {incident}
FOR EACH ROW EXECUTE FUNCTION vigil_incident_api_row()""",
        # A link or an assignment row: its incident's (old and new, if it moved).
        f"""CREATE OR REPLACE FUNCTION vigil_incident_api_touch() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND NEW.incident_id <> OLD.incident_id) THEN
        UPDATE {incident} SET api_head = NULL WHERE id = OLD.incident_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        UPDATE {incident} SET api_head = NULL WHERE id = NEW.incident_id;
    END IF;
    RETURN NULL;
END
$$""",
        f"""CREATE TRIGGER incident_api_links AFTER INSERT OR UPDATE OR DELETE ON {links}
FOR EACH ROW EXECUTE FUNCTION vigil_incident_api_touch()""",
        f"""CREATE TRIGGER incident_api_assignments AFTER INSERT OR UPDATE OR DELETE ON {assignment}
FOR EACH ROW EXECUTE FUNCTION vigil_incident_api_touch()""",
        # A row other incidents' rows show: every incident that shows it.
        *_marking(incident, "service", service, links, "service_id", ("slug", "name")),
        *_marking(incident, "role", role, assignment, "role_id", ("key", "position")),
        *_marking(
            incident, "user", user, assignment, "user_id", ("username", "first_name", "last_name")
        ),
        # Every incident already stored.
        f"UPDATE {incident} SET api_head = NULL",
    ]
    backwards = [
        f"DROP TRIGGER IF EXISTS incident_api_user ON {user}",
        f"DROP TRIGGER IF EXISTS incident_api_role ON {role}",
        f"DROP TRIGGER IF EXISTS incident_api_service ON {service}",
        f"DROP TRIGGER IF EXISTS incident_api_assignments ON {assignment}",
        f"DROP TRIGGER IF EXISTS incident_api_links ON {links}",
        f"DROP TRIGGER IF EXISTS incident_api_row ON {incident}",
        "DROP FUNCTION IF EXISTS vigil_incident_api_user()",
        "DROP FUNCTION IF EXISTS vigil_incident_api_role()",
        "DROP FUNCTION IF EXISTS vigil_incident_api_service()",
        "DROP FUNCTION IF EXISTS vigil_incident_api_touch()",
        "DROP FUNCTION IF EXISTS vigil_incident_api_row()",
        f"ALTER TABLE {incident} DROP COLUMN IF EXISTS api_head, DROP COLUMN IF EXISTS api_roles",
    ]
    return forwards, backwards


def _run(apps, schema_editor, *, forwards: bool) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    statements = _statements(apps, schema_editor.quote_name)[0 if forwards else 1]
    for statement in statements:
        schema_editor.execute(statement, params=None)


def create(apps, schema_editor):
    _run(apps, schema_editor, forwards=True)


def drop(apps, schema_editor):
    _run(apps, schema_editor, forwards=False)


class Migration(migrations.Migration):
    dependencies = [
        ("incidents", "0016_delivery_group_hash"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create, drop)]
