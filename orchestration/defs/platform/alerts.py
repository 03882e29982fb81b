"""Alerts: failed runs and failed error-severity checks, posted to ALERT_WEBHOOK_URL."""

import dagster as dg
from dagster._core.events import DagsterEventType

from orchestration.alerts import send_alert
from orchestration.resources import AlertWebhook

SENSOR_INTERVAL_SECONDS = 30


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs to ALERT_WEBHOOK_URL (and logs them).",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook):
    run = context.dagster_run
    send_alert(
        alert_webhook.url(),
        f"Run failed: {run.job_name}",
        [f"run id: {run.run_id}", f"error: {context.failure_event.message or 'see the run logs'}"],
    )


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed error-severity asset checks to ALERT_WEBHOOK_URL (and logs them).",
)
def failed_check_alert(context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after
        ),
        ascending=True,
        limit=500,
    )
    if not records:
        return dg.SkipReason("no new check results")
    failed = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(f"{evaluation.asset_key.to_user_string()} · {evaluation.check_name}")
    context.update_cursor(str(records[-1].storage_id))
    if not failed:
        return dg.SkipReason(f"{len(records)} new check results, none failed with severity ERROR")
    send_alert(alert_webhook.url(), "Error-severity checks failed", failed)
    return dg.SkipReason(f"alerted on {len(failed)} failed checks")
