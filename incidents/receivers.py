"""Signal receivers of the incident core (failed-login counting and the like live here)."""
