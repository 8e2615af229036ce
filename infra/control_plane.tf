# The control plane: Lambdas, their event rules and the REST API come from
# `chalice package --pkg-format terraform`, adapted by scripts/package_control_plane.py into
# the module in ./control_plane (generated; not edited by hand). What Chalice cannot know
# (names of the resources above, the IAM role, the API key) is wired in here.

locals {
  task_tags          = merge({ app = var.name, stage = var.stage }, var.task_tags)
  security_group_ids = concat([aws_security_group.task.id], var.extra_security_group_ids)

  control_plane_environment = merge(var.control_plane_environment, {
    DB_S3_BUCKET                 = aws_s3_bucket.database.bucket
    DB_S3_KEY                    = var.db_key
    WAKEFUL_LEASE_TABLE          = aws_dynamodb_table.lease.name
    WAKEFUL_LEASE_NAME           = local.lease_name
    WAKEFUL_CLUSTER              = aws_ecs_cluster.this.arn
    WAKEFUL_TASK_DEFINITION      = aws_ecs_task_definition.app.arn
    WAKEFUL_CONTAINER_NAME       = var.container_name
    WAKEFUL_SUBNETS              = join(",", var.subnet_ids)
    WAKEFUL_SECURITY_GROUPS      = join(",", local.security_group_ids)
    WAKEFUL_ASSIGN_PUBLIC_IP     = var.assign_public_ip ? "true" : "false"
    WAKEFUL_APP_PORT             = tostring(var.app_port)
    WAKEFUL_START_TIMEOUT        = tostring(var.start_timeout_seconds)
    WAKEFUL_LEASE_TTL            = tostring(var.lease_ttl_seconds)
    WAKEFUL_TASK_TAGS            = join(",", [for k, v in local.task_tags : "${k}=${v}"])
    WAKEFUL_TASK_LAUNCHER        = "ecs"
    POWERTOOLS_METRICS_NAMESPACE = local.metrics_namespace
    # The app compares the x-api-key header with this digest too, so the function is not
    # open when reached around API Gateway; only the digest is in the environment.
    WAKEFUL_API_KEY_SHA256 = var.enable_api ? sha256(aws_api_gateway_api_key.client[0].value) : ""
  })
}

module "control_plane" {
  source = "./control_plane"

  role_arn           = aws_iam_role.control_plane.arn
  environment        = local.control_plane_environment
  cluster_arn        = aws_ecs_cluster.this.arn
  enable_api         = var.enable_api
  log_retention_days = var.log_retention_days
}

# ---------------------------------------------------------------------------
# REST API stage, API key and usage plan (Chalice marks the routes api_key_required;
# API Gateway enforces it only once a key and a usage plan exist)
# ---------------------------------------------------------------------------

resource "aws_api_gateway_stage" "api" {
  #checkov:skip=CKV2_AWS_4:Execution logging needs the account-wide API Gateway CloudWatch role, which this module must not overwrite.
  #checkov:skip=CKV_AWS_76:Access logs need the account-wide API Gateway CloudWatch role, which this module must not overwrite; Lambda logs record every request.
  #checkov:skip=CKV_AWS_73:X-Ray tracing is off, like the Lambdas' tracer, to keep wake latency and cost down.
  #checkov:skip=CKV_AWS_120:Responses describe live state (starting, running); caching them would be wrong.
  #checkov:skip=CKV2_AWS_51:Clients authenticate with an API key; the backend is not behind the API, so client certificates add nothing.
  #checkov:skip=CKV2_AWS_29:A WAF web ACL costs more per month than an idle wakeful deployment; the usage plan throttles abuse.
  count = var.enable_api ? 1 : 0

  rest_api_id   = module.control_plane.rest_api_id
  deployment_id = module.control_plane.deployment_id
  stage_name    = module.control_plane.api_stage_name
}

resource "aws_api_gateway_method_settings" "api" {
  #checkov:skip=CKV_AWS_225:Responses describe live state (starting, running); caching them would be wrong.
  #checkov:skip=CKV_AWS_308:Follows from CKV_AWS_225: no cache, so nothing to encrypt.
  count = var.enable_api ? 1 : 0

  rest_api_id = module.control_plane.rest_api_id
  stage_name  = aws_api_gateway_stage.api[0].stage_name
  method_path = "*/*"

  settings {
    metrics_enabled        = true
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
  }
}

resource "aws_api_gateway_api_key" "client" {
  count = var.enable_api ? 1 : 0

  name        = "${local.prefix}-client"
  description = "Key for POST /wake, GET /status and POST /sleep of wakeful ${var.stage}"
}

resource "aws_api_gateway_usage_plan" "client" {
  count = var.enable_api ? 1 : 0

  name = "${local.prefix}-client"

  api_stages {
    api_id = module.control_plane.rest_api_id
    stage  = aws_api_gateway_stage.api[0].stage_name
  }

  throttle_settings {
    rate_limit  = var.api_throttle_rate_limit
    burst_limit = var.api_throttle_burst_limit
  }
}

resource "aws_api_gateway_usage_plan_key" "client" {
  count = var.enable_api ? 1 : 0

  key_id        = aws_api_gateway_api_key.client[0].id
  key_type      = "API_KEY"
  usage_plan_id = aws_api_gateway_usage_plan.client[0].id
}

# ---------------------------------------------------------------------------
# Task events whose handling failed: Lambda retries an asynchronous event twice, then sends
# it here with the error instead of dropping it (invariant 5: every stop is accounted). The
# reconciler accounts the task from ECS's list of stopped tasks within minutes; the queue
# and its alarm say that an event failed, and why.
# ---------------------------------------------------------------------------

resource "aws_sqs_queue" "failed_task_events" {
  name                      = "${local.prefix}-failed-task-events"
  message_retention_seconds = 1209600 # 14 days, SQS's longest
  sqs_managed_sse_enabled   = true
}

resource "aws_lambda_function_event_invoke_config" "task_state_change" {
  function_name                = module.control_plane.function_names["on_task_state_change"]
  maximum_retry_attempts       = 2
  maximum_event_age_in_seconds = 3600 # ECS lists a stopped task for about an hour

  destination_config {
    on_failure {
      destination = aws_sqs_queue.failed_task_events.arn
    }
  }

  depends_on = [aws_iam_role_policy.control_plane]
}
