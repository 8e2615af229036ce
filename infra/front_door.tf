# The front door: the app's one stable public URL. A plain Lambda (frontdoor/handler.py)
# behind a function URL, in the task's VPC so it reaches the task's private address on the
# app port. A request to a sleeping backend wakes it with the control plane's own wake (the
# same code, in-process) and is held until the app answers; see README "The front door".
#
# A plain handler and not a Chalice route: Chalice's router has no working greedy catch-all
# ({proxy+}, aws/chalice#2072), and a function URL hands every method and path to one
# function, at no charge beyond the Lambda's own.
#
# Its package, control_plane/front_door.zip, is written by scripts/package_control_plane.py
# (through scripts/package_front_door.py): only what the handler imports.

variable "enable_front_door" {
  description = "Create the front door: a public function URL that wakes the backend and forwards every request to it."
  type        = bool
  default     = true
}

variable "front_door_hold_seconds" {
  description = "How long a request to a sleeping backend waits for it (WAKEFUL_FRONT_DOOR_HOLD) before a 503 \"waking up\" answer with Retry-After. At least 5 s below front_door_timeout_seconds, which the app needs to answer."
  type        = number
  default     = 20

  validation {
    condition     = var.front_door_hold_seconds >= 0
    error_message = "front_door_hold_seconds must be >= 0 (0: never hold, answer 503 at once)."
  }
}

variable "front_door_timeout_seconds" {
  description = "Timeout of the front door Lambda: the most a request may take, hold included. Keep it at 30 or less to put CloudFront or API Gateway (30 s origin timeout) in front unchanged."
  type        = number
  default     = 30

  validation {
    condition     = var.front_door_timeout_seconds >= 5 && var.front_door_timeout_seconds <= 900
    error_message = "front_door_timeout_seconds must be between 5 and 900 (the Lambda maximum)."
  }
}

variable "front_door_keepalive_seconds" {
  description = "Traffic through the front door refreshes the lease's last_wake (the agent's idle timer) at most once per this many seconds per Lambda instance. Null: 60, or a third of idle_timeout_seconds when that is shorter. At most half of idle_timeout_seconds."
  type        = number
  default     = null

  validation {
    condition     = var.front_door_keepalive_seconds == null || try(var.front_door_keepalive_seconds >= 1, false)
    error_message = "front_door_keepalive_seconds must be >= 1."
  }
}

variable "front_door_memory_mb" {
  description = "Memory of the front door Lambda (CPU grows with it: more memory, shorter cold starts)."
  type        = number
  default     = 256

  validation {
    condition     = var.front_door_memory_mb >= 128 && var.front_door_memory_mb <= 10240
    error_message = "front_door_memory_mb must be between 128 and 10240."
  }
}

variable "front_door_subnet_ids" {
  description = "Private subnets of the front door Lambda. Empty: subnet_ids. They need a route to the DynamoDB and ECS APIs: a NAT gateway, or VPC endpoints (a DynamoDB gateway endpoint, free, and an ECS interface endpoint)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.front_door_subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "front_door_subnet_ids must be subnet ids."
  }
}

variable "front_door_reserved_concurrency" {
  description = "Reserved concurrency of the front door: a ceiling on what public traffic can cost, taken from the account's pool. -1: no reservation."
  type        = number
  default     = -1
}

locals {
  front_door_count   = var.enable_front_door ? 1 : 0
  front_door_name    = "${local.prefix}-front-door"
  front_door_package = "${path.module}/control_plane/front_door.zip"
  front_door_subnets = length(var.front_door_subnet_ids) > 0 ? var.front_door_subnet_ids : var.subnet_ids

  front_door_keepalive = coalesce(
    var.front_door_keepalive_seconds,
    var.idle_timeout_seconds > 0 ? max(1, min(60, floor(var.idle_timeout_seconds / 3))) : 60,
  )

  # The wake is the control plane's own code: the same variables, plus the front door's, less
  # the API key digest: the front door serves no API, and a key change must not redeploy it.
  front_door_environment = merge({
    for name, value in local.control_plane_environment : name => value
    if name != "WAKEFUL_API_KEY_SHA256"
    }, {
    WAKEFUL_FRONT_DOOR_HOLD      = tostring(var.front_door_hold_seconds)
    WAKEFUL_FRONT_DOOR_TIMEOUT   = tostring(var.front_door_timeout_seconds)
    WAKEFUL_FRONT_DOOR_KEEPALIVE = tostring(local.front_door_keepalive)
    WAKEFUL_IDLE_TIMEOUT         = tostring(var.idle_timeout_seconds)
    POWERTOOLS_SERVICE_NAME      = "front-door"
  })

  ec2_arn_prefix = "arn:${local.partition}:ec2:${local.region}:${local.account_id}"
}

# ---------------------------------------------------------------------------
# Network: the front door may reach the app port of the task, and the AWS APIs
# ---------------------------------------------------------------------------

resource "aws_security_group" "front_door" {
  count = local.front_door_count

  name        = "${local.prefix}-front-door"
  description = "wakeful ${var.stage} front door Lambda"
  vpc_id      = var.vpc_id
}

# Standalone rules: the task's group names this group in its ingress (ecs.tf), so inline
# rules naming the task's group here would make the two groups depend on each other.
resource "aws_vpc_security_group_egress_rule" "front_door_to_app" {
  count = local.front_door_count

  security_group_id            = aws_security_group.front_door[0].id
  description                  = "The app port of the backend task"
  ip_protocol                  = "tcp"
  from_port                    = var.app_port
  to_port                      = var.app_port
  referenced_security_group_id = aws_security_group.task.id
}

resource "aws_vpc_security_group_egress_rule" "front_door_to_aws" {
  count = local.front_door_count

  security_group_id = aws_security_group.front_door[0].id
  description       = "HTTPS to DynamoDB and ECS (through NAT or VPC endpoints)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

# ---------------------------------------------------------------------------
# Role: read the lease and wake (what POST /wake does), logs, and the VPC's network interfaces
# ---------------------------------------------------------------------------

resource "aws_iam_role" "front_door" {
  count = local.front_door_count

  name               = "${local.prefix}-front-door"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

data "aws_iam_policy_document" "front_door" {
  count = local.front_door_count

  source_policy_documents = [data.aws_iam_policy_document.start_backend_task.json]

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.front_door[0].arn}:*"]
  }

  statement {
    sid = "ReadAndWakeLease"
    # Every request reads the lease; the wake reserves it and refreshes last_wake (all
    # conditional UpdateItems).
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.lease.arn]
  }

  statement {
    sid = "FindTaskEndpoint"
    # A wake asks ECS for the holder's address when its RUNNING event has not been seen.
    actions   = ["ecs:DescribeTasks"]
    resources = [local.cluster_task_arns]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid     = "CreateVpcNetworkInterface"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["${local.ec2_arn_prefix}:network-interface/*", "${local.ec2_arn_prefix}:security-group/${aws_security_group.front_door[0].id}"],
      [for s in local.front_door_subnets : "${local.ec2_arn_prefix}:subnet/${s}"],
    )
  }

  statement {
    sid = "ManageVpcNetworkInterfaces"
    # Lambda's documented scope for these (all resources of this account and region).
    actions   = ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
    resources = ["${local.ec2_arn_prefix}:*/*"]
  }

  statement {
    sid = "DescribeVpcNetwork"
    # Describe calls have no resource type: "*" is the only accepted resource.
    actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "LeaseKey"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "front_door" {
  count = local.front_door_count

  name   = "front-door"
  role   = aws_iam_role.front_door[0].id
  policy = data.aws_iam_policy_document.front_door[0].json
}

# ---------------------------------------------------------------------------
# The Lambda and its public URL
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "front_door" {
  #checkov:skip=CKV_AWS_158:Logs carry operational messages, no secrets; CloudWatch encrypts them at rest with its own key.
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default) to keep an idle backend near zero cost.
  count = local.front_door_count

  name              = "/aws/lambda/${local.front_door_name}"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "front_door" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by its function URL only; a dead-letter queue applies to asynchronous invocations.
  #checkov:skip=CKV_AWS_115:front_door_reserved_concurrency sets it; a reservation by default would take from the account pool while the app sleeps (and fails in accounts with the default limit).
  #checkov:skip=CKV_AWS_173:Environment holds resource names only, no secrets.
  #checkov:skip=CKV_AWS_50:X-Ray is off, like the control plane's, to keep cold starts short.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile outside this stack; the package is built from the reviewed repository.
  count = local.front_door_count

  function_name = local.front_door_name
  description   = "wakeful ${var.stage} front door: wakes the backend and forwards every request to it"
  role          = aws_iam_role.front_door[0].arn
  handler       = "frontdoor.handler.handler"
  runtime       = "python3.12"
  # Pure Python: Graviton is about 20% cheaper per GB-second.
  architectures                  = ["arm64"]
  filename                       = local.front_door_package
  source_code_hash               = filebase64sha256(local.front_door_package)
  memory_size                    = var.front_door_memory_mb
  timeout                        = var.front_door_timeout_seconds
  reserved_concurrent_executions = var.front_door_reserved_concurrency

  vpc_config {
    subnet_ids         = local.front_door_subnets
    security_group_ids = [aws_security_group.front_door[0].id]
  }

  environment {
    variables = local.front_door_environment
  }

  # The log group exists before the first line is written, so the role needs no
  # logs:CreateLogGroup; the policy exists before Lambda creates the network interfaces.
  depends_on = [aws_cloudwatch_log_group.front_door, aws_iam_role_policy.front_door]

  lifecycle {
    precondition {
      condition     = var.front_door_hold_seconds <= var.front_door_timeout_seconds - 5
      error_message = "front_door_hold_seconds must be at least 5 s below front_door_timeout_seconds: a held request still needs time to reach the app."
    }
    precondition {
      condition     = var.idle_timeout_seconds == 0 || local.front_door_keepalive * 2 <= var.idle_timeout_seconds
      error_message = "front_door_keepalive_seconds must be at most half of idle_timeout_seconds, or traffic through the front door cannot keep the backend awake."
    }
  }
}

resource "aws_lambda_function_url" "front_door" {
  #checkov:skip=CKV_AWS_258:The front door is the app's public entrance: end users need no AWS credentials, and the app does its own auth.
  count = local.front_door_count

  function_name      = aws_lambda_function.front_door[0].function_name
  authorization_type = "NONE"
  # Buffered: a whole request in, a whole response out (6 MB each way; README "The front door").
  invoke_mode = "BUFFERED"
}

resource "aws_lambda_permission" "front_door_url" {
  #checkov:skip=CKV_AWS_301:Public by design, and only through the function URL (function_url_auth_type NONE), which is the app's entrance.
  count = local.front_door_count

  statement_id           = "FrontDoorPublicUrl"
  action                 = "lambda:InvokeFunctionUrl"
  function_name          = aws_lambda_function.front_door[0].function_name
  principal              = "*"
  function_url_auth_type = "NONE"
}

# Function URLs created since October 2025 also need lambda:InvokeFunction, allowed only when
# invoked through the URL (lambda:InvokedViaFunctionUrl). The AWS provider has that argument
# from 6.29 only (hashicorp/terraform-provider-aws#44858); this configuration is on provider 5,
# and a plain public InvokeFunction would let any AWS account invoke the function directly
# with a forged event. CloudFormation has the property, so a one-resource stack carries it.
# With provider >= 6.29: an aws_lambda_permission with invoked_via_function_url = true.
resource "aws_cloudformation_stack" "front_door_invoke" {
  #checkov:skip=CKV_AWS_124:A one-resource stack that Terraform creates and deletes; its events are Terraform's own output, an SNS topic for them would only add noise to the alarm topic.
  count = local.front_door_count

  name = "${local.front_door_name}-invoke"
  template_body = jsonencode({
    AWSTemplateFormatVersion = "2010-09-09"
    Description              = "wakeful ${var.stage} front door: lambda:InvokeFunction through its function URL only"
    Resources = {
      InvokeViaFunctionUrl = {
        Type = "AWS::Lambda::Permission"
        Properties = {
          Action                = "lambda:InvokeFunction"
          FunctionName          = aws_lambda_function.front_door[0].function_name
          Principal             = "*"
          InvokedViaFunctionUrl = true
        }
      }
    }
  })
}

# The handler answers every failure itself (a 502, a 503): an Error here is a timeout, a
# crash or a bug, and end users saw a 5xx that nothing else explains.
resource "aws_cloudwatch_metric_alarm" "front_door_errors" {
  count = local.front_door_count

  alarm_name          = "${local.prefix}-front-door-errors"
  alarm_description   = "The wakeful front door Lambda failed (timeout, crash or a bug): requests to the app's URL got errors. See its log group for the ERROR lines."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.front_door[0].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# Its own bugs, answered as a 500 (FrontDoorBug, EMF): Lambda counts no Error for them.
resource "aws_cloudwatch_metric_alarm" "front_door_bugs" {
  count = local.front_door_count

  alarm_name          = "${local.prefix}-front-door-bugs"
  alarm_description   = "The wakeful front door answered a request with a 500 (a bug of its own). Its log group has the ERROR line with the traceback."
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "bugs"
    label       = "FrontDoorBug"
    expression  = "SELECT SUM(FrontDoorBug) FROM ${local.namespace_query}"
    period      = 60
    return_data = true
  }
}

output "front_door_url" {
  description = "The app's public URL: a request wakes the backend and reaches it (no API key; the app does its own auth). Null when enable_front_door is false."
  value       = var.enable_front_door ? aws_lambda_function_url.front_door[0].function_url : null
}

output "front_door_function" {
  description = "Front door Lambda function name."
  value       = var.enable_front_door ? aws_lambda_function.front_door[0].function_name : null
}
