"""Detection (§4.1, §7): the inbound webhooks of monitoring tools, turned into alerts,
deduplicated, grouped into incidents and classified by the alert rules of §7.2.

* ``parsing``: each sender's wire format (Alertmanager v4, Grafana v1, PagerDuty Events API
  v2, Vigil's generic JSON) validated and read into one shape, :class:`IncomingAlert`.
* ``verify``: credentials checked on the raw body before anything is parsed.
* ``views`` / ``urls``: the ``/hooks/...`` endpoints; they store each accepted delivery raw
  and hand it to a task.
* ``intake``: storing a delivery and queueing (and re-queueing) its processing.
* ``rules``: the §7.2 classification (severity, action).
* ``processing``: claiming a delivery (by id, or the oldest fresh one for the drains) and
  grouping its alerts; ``firing`` counts or stores firing alerts and opens or joins
  incidents; ``resolution`` records resolved and acknowledged alerts and auto-resolves;
  ``state`` is what a run carries and reports.
* ``integrations``: creating and changing integrations (admin and API), their sender URLs
  and configuration snippets.
"""
