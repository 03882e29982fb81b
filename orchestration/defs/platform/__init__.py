"""Platform: daily_refresh and its schedule, health, housekeeping, alerts, tenant watchdog."""
