"""Admin for the escalation matrix, running escalations and escalation events."""
