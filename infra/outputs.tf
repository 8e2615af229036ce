output "bucket" {
  description = "S3 bucket holding the database (DB_S3_BUCKET)."
  value       = aws_s3_bucket.database.bucket
}

output "db_key" {
  description = "Object key of the current database (DB_S3_KEY)."
  value       = var.db_key
}

output "lease_table" {
  description = "DynamoDB lease table (WAKEFUL_LEASE_TABLE)."
  value       = aws_dynamodb_table.lease.name
}

output "lease_name" {
  description = "Lease item key (WAKEFUL_LEASE_NAME)."
  value       = local.lease_name
}

output "cluster" {
  description = "ECS cluster name."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ECS cluster ARN (WAKEFUL_CLUSTER)."
  value       = aws_ecs_cluster.this.arn
}

output "task_definition" {
  description = "Fargate task definition ARN, with revision (WAKEFUL_TASK_DEFINITION)."
  value       = aws_ecs_task_definition.app.arn
}

output "task_family" {
  description = "Task definition family."
  value       = aws_ecs_task_definition.app.family
}

output "task_security_group" {
  description = "Security group created for the task."
  value       = aws_security_group.task.id
}

output "task_log_group" {
  description = "CloudWatch log group of the app container (and its agent)."
  value       = aws_cloudwatch_log_group.task.name
}

output "task_role_arn" {
  description = "IAM role of the sync agent."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "IAM role ECS uses to pull the image and write logs."
  value       = aws_iam_role.execution.arn
}

output "control_plane_role_arn" {
  description = "IAM role of the control plane Lambdas."
  value       = aws_iam_role.control_plane.arn
}

output "control_plane_functions" {
  description = "Control plane Lambda function names, by Chalice handler name."
  value       = module.control_plane.function_names

  # A package built for another stage or app would deploy Lambdas named for it next to
  # resources named for this one.
  precondition {
    condition     = module.control_plane.stage == var.stage && module.control_plane.app_name == var.name
    error_message = "infra/control_plane was packaged for another app or stage; run: python scripts/package_control_plane.py --stage ${var.stage} (app_name in .chalice/config.json must equal var.name)."
  }
}

output "api_url" {
  description = "Base URL of the control plane API (POST /wake, GET /status, POST /sleep). Null when enable_api is false."
  value       = var.enable_api ? aws_api_gateway_stage.api[0].invoke_url : null
}

output "api_key_id" {
  description = "API key id; read its value with: aws apigateway get-api-key --api-key <id> --include-value."
  value       = var.enable_api ? aws_api_gateway_api_key.client[0].id : null
}

output "api_key" {
  description = "API key value, sent as the x-api-key header."
  value       = var.enable_api ? aws_api_gateway_api_key.client[0].value : null
  sensitive   = true
}

output "failed_task_events_queue" {
  description = "SQS queue that receives ECS task events whose handling failed every retry, each with its error."
  value       = aws_sqs_queue.failed_task_events.url
}

output "alarm_topic_arn" {
  description = "SNS topic that receives the alarms."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard" {
  description = "CloudWatch dashboard name."
  value       = aws_cloudwatch_dashboard.main.dashboard_name
}

locals {
  # What the operator CLI needs to find this stage (wakeful_cli/profile.py names the keys).
  # No secret: the API key is named by id and read from API Gateway with the operator's
  # own credentials.
  cli_profile = {
    bucket          = aws_s3_bucket.database.bucket
    key             = var.db_key
    lease_table     = aws_dynamodb_table.lease.name
    lease_name      = local.lease_name
    region          = local.region
    cluster         = aws_ecs_cluster.this.arn
    api_url         = var.enable_api ? aws_api_gateway_stage.api[0].invoke_url : null
    api_key_id      = var.enable_api ? aws_api_gateway_api_key.client[0].id : null
    agent_log_group = aws_cloudwatch_log_group.task.name
    control_plane_log_groups = concat(
      [for name in values(module.control_plane.function_names) : "/aws/lambda/${name}"],
      var.enable_front_door ? [aws_cloudwatch_log_group.front_door[0].name] : [],
    )
  }
}

output "wakeful_profile" {
  description = "A profile for the operator CLI, as TOML: terraform output -raw wakeful_profile > wakeful.toml (or append it to ~/.config/wakeful/config.toml); then wakeful status, wakeful logs, ... need no exports."
  # TOML's basic strings and arrays of them are JSON's.
  value = join("\n", concat(
    ["[profile.${var.stage}]"],
    [for key, value in local.cli_profile : "${key} = ${jsonencode(value)}" if value != null],
    [""],
  ))
}
