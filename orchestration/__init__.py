"""Dagster orchestration of the platform: assets, jobs, schedules, sensors, checks."""
