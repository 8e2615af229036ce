# Three roles, each allowed only what its holder really calls:
#   execution     – ECS itself: pull the image, write the task's logs, read its secrets;
#   task          – the sync agent in the container: the lease item and the database objects;
#   control_plane – the Chalice Lambdas: start/stop/inspect this family's tasks on this cluster.
#
# Wildcards that remain, each because AWS offers nothing narrower:
#   * ecr:GetAuthorizationToken has no resource type ("*" is the only accepted resource).
#   * ecs:ListTasks is authorised against container instances, which Fargate tasks do not
#     have; it is scoped to this cluster with the ecs:cluster condition instead.
#   * "…:task/<cluster>/*", "…:task-definition/<family>:*", "<key>.backup.*" and
#     "<key>.wakeful/*" are patterns inside one cluster, one family and one key, not "*".
# tests/infra/test_terraform.py checks the rendered policies against this list.

locals {
  ecr_image = regex("^(?:(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com(?P<cn>\\.cn)?/(?P<repository>[^:@]+))?", var.image)
  ecr_repository_arn = local.ecr_image.account == null ? null : format(
    "arn:%s:ecr:%s:%s:repository/%s",
    local.ecr_image.cn == null ? "aws" : "aws-cn",
    local.ecr_image.region,
    local.ecr_image.account,
    local.ecr_image.repository,
  )

  # valueFrom may name a JSON key or version after the secret ARN (arn:…:secret:name:key::);
  # IAM wants the secret itself: the first seven fields.
  secret_arns = distinct([
    for arn in values(var.app_secrets) : join(":", slice(split(":", arn), 0, 7))
    if split(":", arn)[2] == "secretsmanager"
  ])
  parameter_arns = distinct([
    for arn in values(var.app_secrets) : arn if split(":", arn)[2] == "ssm"
  ])

  cluster_task_arns      = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${aws_ecs_cluster.this.name}/*"
  task_definition_family = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${aws_ecs_task_definition.app.family}:*"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    # Only ECS acting for this account may assume the roles (confused-deputy guard).
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# ---------------------------------------------------------------------------
# Execution role (used by ECS before and around the container)
# ---------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${local.prefix}-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "WriteTaskLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.task.arn}:*"]
  }

  dynamic "statement" {
    for_each = local.ecr_repository_arn == null ? [] : [1]
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.ecr_repository_arn == null ? [] : [1]
    content {
      sid = "PullImage"
      actions = [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
      ]
      resources = [local.ecr_repository_arn]
    }
  }

  dynamic "statement" {
    for_each = length(local.secret_arns) == 0 ? [] : [1]
    content {
      sid       = "ReadAppSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = local.secret_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.parameter_arns) == 0 ? [] : [1]
    content {
      sid       = "ReadAppParameters"
      actions   = ["ssm:GetParameters"]
      resources = local.parameter_arns
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "task-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# ---------------------------------------------------------------------------
# Task role (the sync agent)
# ---------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${local.prefix}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "task" {
  statement {
    sid = "Lease"
    # Acquire, renew and release are conditional UpdateItems; PutItem creates the item the
    # first time; GetItem reads the holder.
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.lease.arn]
  }

  statement {
    sid = "MissingKeysAreNotFound"
    # No LIST is sent on any hot path, but S3 answers a GET or HEAD of a missing key with 404
    # only to a caller holding s3:ListBucket (else 403), and the chain's probe for its end
    # needs that 404. A GET carries no s3:prefix, so this grant cannot be conditioned on one.
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }

  statement {
    sid = "ListDatabaseVersionsAndBackups"
    # Listing backups and versions; the prefix condition keeps the agent out of the rest
    # of a shared bucket's versions (an adopted db-sync.sh bucket may hold other things).
    actions   = ["s3:ListBucketVersions"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.db_key}*"]
    }
  }

  statement {
    sid = "ReadWriteDatabase"
    # Head/get (any version), conditional put, multipart upload of large files, and the
    # copy of the current object into a timestamped backup.
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:GetObjectVersion",
      "s3:ListMultipartUploadParts",
      "s3:PutObject",
    ]
    resources = [local.database_object_arn, local.backup_objects_arn]
  }

  statement {
    sid = "ReadWriteChain"
    # Chain replication (WAKEFUL_REPLICATION=chain): position-keyed segments and the manifest
    # under "<key>.wakeful/", each written with If-None-Match or If-Match.
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${local.bucket_arn}/${var.db_key}.wakeful/*"]
  }

  statement {
    sid = "ExpireOldBackupsAndSegments"
    # Backup retention deletes old backups, chain retention the segments below the oldest
    # base its window needs; the current database itself is never deleted.
    actions   = ["s3:DeleteObject"]
    resources = [local.backup_objects_arn, "${local.bucket_arn}/${var.db_key}.wakeful/*"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "DatabaseKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "task" {
  name   = "sync-agent"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# ---------------------------------------------------------------------------
# Control plane role (the Chalice Lambdas; Chalice's own role is replaced by this one)
# ---------------------------------------------------------------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "control_plane" {
  name               = "${local.prefix}-control-plane"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

# Starting a backend task, as a wake does: the control plane and the front door both wake.
data "aws_iam_policy_document" "start_backend_task" {
  statement {
    sid       = "StartBackendTask"
    actions   = ["ecs:RunTask"]
    resources = [local.task_definition_family]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid = "TagTaskOnStart"
    # RunTask with tags (WAKEFUL_TASK_TAGS) also authorises ecs:TagResource on the new task.
    actions   = ["ecs:TagResource"]
    resources = [local.cluster_task_arns]

    condition {
      test     = "StringEquals"
      variable = "ecs:CreateAction"
      values   = ["RunTask"]
    }
  }

  statement {
    sid       = "PassTaskRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task.arn, aws_iam_role.execution.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "control_plane" {
  source_policy_documents = [data.aws_iam_policy_document.start_backend_task.json]

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for arn in values(module.control_plane.log_group_arns) : "${arn}:*"]
  }

  statement {
    sid       = "InspectAndStopTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask"]
    resources = [local.cluster_task_arns]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid       = "ListClusterTasks"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [aws_ecs_cluster.this.arn]
    }
  }

  statement {
    sid       = "Lease"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.lease.arn]
  }

  statement {
    sid = "VerifyUploads"
    # head-object proves a stopped task's final upload (GetObject covers HEAD).
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = [local.database_object_arn, local.backup_objects_arn]
  }

  statement {
    sid = "ReadTheChain"
    # A chain-mode stop is proven by the manifest's stop record, and an unsynced one's loss
    # window by HEADs of segment keys (docs/replication.md): reads of the current objects
    # under KEY.wakeful/ only, never a write or an older version.
    actions   = ["s3:GetObject"]
    resources = ["${local.bucket_arn}/${var.db_key}.wakeful/*"]
  }

  statement {
    sid = "MissingKeysAreNotFound"
    # A HEAD of a free chain position must answer 404, not 403: S3 gives the 404 only to a
    # caller holding s3:ListBucket, and a HEAD carries no s3:prefix to condition it on.
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
  }

  statement {
    sid       = "CountVersionsAndBackups"
    actions   = ["s3:ListBucketVersions"]
    resources = [local.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.db_key}*"]
    }
  }

  statement {
    sid = "FailedTaskEvents"
    # Lambda sends a task event whose handling failed every retry to the on-failure
    # destination as the function's role.
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.failed_task_events.arn]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn == null ? [] : [1]
    content {
      sid       = "DatabaseKey"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
    }
  }
}

resource "aws_iam_role_policy" "control_plane" {
  name   = "control-plane"
  role   = aws_iam_role.control_plane.id
  policy = data.aws_iam_policy_document.control_plane.json
}
