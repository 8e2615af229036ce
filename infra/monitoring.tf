# Alarms and a dashboard over the EMF metrics that the agent and the control plane emit.
# The queries use CloudWatch Metrics Insights over the whole namespace, so they do not
# depend on which dimensions (service, function) the emitters add.

locals {
  # Names emitted by chalicelib/control.py (control plane) and container/ (agent).
  metric = {
    wakes               = "Wake"
    tasks_started       = "TaskStarted"
    tasks_stopped       = "TaskStopped"
    verified_stops      = "VerifiedStop"
    unsynced_stops      = "UnsyncedStop"
    unsynced_window     = "UnsyncedWindow"
    sync_duration       = "SyncDuration"
    database_size       = "DatabaseSize"
    sync_failures       = "SyncFailed"
    final_upload_failed = "FinalUploadFailed"
    leases_lost         = "LeaseLost"
    task_start_failures = "TaskStartFailed"
  }

  namespace_query = "\"${local.metrics_namespace}\""

  dashboard_widgets = [
    for i, w in [
      { title = "Wakes", stat = "SUM", metrics = ["wakes", "task_start_failures"] },
      { title = "Tasks started and stopped", stat = "SUM", metrics = ["tasks_started", "tasks_stopped"] },
      { title = "Verified and unsynced stops", stat = "SUM", metrics = ["verified_stops", "unsynced_stops"] },
      { title = "Data-loss window of unsynced stops (s, max)", stat = "MAX", metrics = ["unsynced_window"] },
      { title = "Sync duration (s, max)", stat = "MAX", metrics = ["sync_duration"] },
      { title = "Database size (bytes, max)", stat = "MAX", metrics = ["database_size"] },
      { title = "Sync failures and lost leases", stat = "SUM", metrics = ["sync_failures", "final_upload_failed", "leases_lost"] },
      ] : {
      type   = "metric"
      x      = (i % 2) * 12
      y      = floor(i / 2) * 6
      width  = 12
      height = 6
      properties = {
        title  = w.title
        region = local.region
        view   = "timeSeries"
        period = 300
        metrics = [
          for j, m in w.metrics : [{
            id         = "q${j}"
            label      = local.metric[m]
            expression = "SELECT ${w.stat}(${local.metric[m]}) FROM ${local.namespace_query}"
          }]
        ]
      }
    }
  ]
}

resource "aws_sns_topic" "alarms" {
  #checkov:skip=CKV_AWS_26:Encrypted only with alarm_topic_kms_key_id: CloudWatch cannot publish to a topic under the AWS-managed alias/aws/sns key.
  name              = "${local.prefix}-alarms"
  kms_master_key_id = var.alarm_topic_kms_key_id
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count = var.alarm_email == "" ? 0 : 1

  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

# Invariant 5: a task stopped without a verified final upload. Every one is worth a page.
resource "aws_cloudwatch_metric_alarm" "unsynced_stop" {
  alarm_name          = "${local.prefix}-unsynced-stop"
  alarm_description   = "A wakeful task stopped without a verified final upload: writes since its last sync may be lost. See the control plane's ERROR log for the stop code, exit codes and the data-loss window."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "unsynced"
    label       = local.metric.unsynced_stops
    expression  = "SELECT SUM(${local.metric.unsynced_stops}) FROM ${local.namespace_query}"
    period      = 60
    return_data = true
  }
}

# A failing handler means STOPPED events go unverified; the unsynced-stop alarm alone
# would stay silent.
resource "aws_cloudwatch_metric_alarm" "control_plane_errors" {
  for_each = module.control_plane.function_names

  alarm_name          = "${local.prefix}-${each.key}-errors"
  alarm_description   = "The wakeful ${each.key} Lambda failed; task state changes or wakes may not have been handled."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = each.value }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# A task event failed every retry and went to the on-failure queue. The reconciler accounts
# the task within minutes; the message (the event, the error) says what went wrong.
resource "aws_cloudwatch_metric_alarm" "failed_task_events" {
  alarm_name          = "${local.prefix}-failed-task-events"
  alarm_description   = "An ECS task state change event failed every retry of the wakeful event handler and was sent to the ${aws_sqs_queue.failed_task_events.name} queue with its error. The reconciler accounts the task from ECS's stopped tasks within minutes; read the message for the cause."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.failed_task_events.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = local.prefix
  dashboard_body = jsonencode({ widgets = local.dashboard_widgets })
}
