# The ECS side: a cluster, the app's log group, its security group and the Fargate task
# definition. The control plane starts tasks of this family; nothing here runs a service,
# so nothing runs (or costs) while the backend sleeps.

locals {
  # The agent's contract (container/ and chalicelib/settings.py). Set last so that
  # app_environment cannot silently point the agent at another bucket or lease.
  agent_environment = {
    DB_S3_BUCKET             = aws_s3_bucket.database.bucket
    DB_S3_KEY                = var.db_key
    DB_LOCAL_PATH            = var.db_local_path
    WAKEFUL_LEASE_TABLE      = aws_dynamodb_table.lease.name
    WAKEFUL_LEASE_NAME       = local.lease_name
    WAKEFUL_SYNC_INTERVAL    = tostring(var.sync_interval_seconds)
    WAKEFUL_LEASE_TTL        = tostring(var.lease_ttl_seconds)
    WAKEFUL_IDLE_TIMEOUT     = tostring(var.idle_timeout_seconds)
    WAKEFUL_BACKUP_RETENTION = tostring(var.backup_retention)
    WAKEFUL_RETENTION        = tostring(var.retention_days * 86400)
    WAKEFUL_STOP_GRACE       = tostring(var.stop_grace_seconds)
    WAKEFUL_STOP_BUDGET      = tostring(var.stop_budget_seconds)
    WAKEFUL_APP_PORT         = tostring(var.app_port)
    WAKEFUL_READY_PATH       = var.ready_path
    AWS_REGION               = local.region
    # The agent's EMF metrics land beside the control plane's, in this stage's namespace.
    POWERTOOLS_METRICS_NAMESPACE = local.metrics_namespace
  }
  task_environment = merge(var.app_environment, local.agent_environment)

  # Fargate's ceiling. The agent's stop budget stays below it so the final upload and the
  # lease release finish before ECS sends SIGKILL.
  stop_timeout_seconds = 120

  database_dir = dirname(var.db_local_path)

  # A TCP connect to the app's port, with the Python the agent brings (no curl needed).
  health_check_command = "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", ${var.app_port}), 3)' || exit 1"
}

resource "aws_ecs_cluster" "this" {
  #checkov:skip=CKV_AWS_224:ECS Exec is not enabled on these tasks, so there is no exec session log to encrypt.
  name = local.prefix

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_cloudwatch_log_group" "task" {
  #checkov:skip=CKV_AWS_158:Logs carry operational messages, no secrets; CloudWatch encrypts them at rest with its own key.
  #checkov:skip=CKV_AWS_338:Retention is the log_retention_days variable (30 days by default) to keep an idle backend near zero cost.
  name              = "/ecs/${local.prefix}"
  retention_in_days = var.log_retention_days
}

resource "aws_security_group" "task" {
  #checkov:skip=CKV2_AWS_5:Attached at run time: the control plane passes it to RunTask (WAKEFUL_SECURITY_GROUPS).
  name        = "${local.prefix}-task"
  description = "wakeful ${var.stage} backend task"
  vpc_id      = var.vpc_id

  dynamic "ingress" {
    for_each = length(var.app_ingress_cidr_blocks) > 0 ? [1] : []
    content {
      description = "App port from the allowed networks"
      protocol    = "tcp"
      from_port   = var.app_port
      to_port     = var.app_port
      cidr_blocks = var.app_ingress_cidr_blocks
    }
  }

  dynamic "ingress" {
    for_each = length(var.app_ingress_security_group_ids) > 0 ? [1] : []
    content {
      description     = "App port from the allowed security groups"
      protocol        = "tcp"
      from_port       = var.app_port
      to_port         = var.app_port
      security_groups = var.app_ingress_security_group_ids
    }
  }

  # The front door Lambda (front_door.tf) forwards the app's public requests to this port.
  dynamic "ingress" {
    for_each = var.enable_front_door ? [1] : []
    content {
      description     = "App port from the front door Lambda"
      protocol        = "tcp"
      from_port       = var.app_port
      to_port         = var.app_port
      security_groups = [aws_security_group.front_door[0].id]
    }
  }

  egress {
    description = "HTTPS to S3, DynamoDB, ECR and CloudWatch Logs (public endpoints or VPC endpoints)"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_ecs_task_definition" "app" {
  #checkov:skip=CKV_AWS_336:readonly_root_filesystem is a variable: most web apps write outside the database directory (static files, caches).
  family                   = local.prefix
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.task_cpu)
  memory                   = tostring(var.task_memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  ephemeral_storage {
    size_in_gib = var.ephemeral_storage_gib
  }

  # A writable task volume for the database directory, only needed when the root
  # filesystem is read-only. Mounting it otherwise would hide whatever the image keeps there.
  dynamic "volume" {
    for_each = var.readonly_root_filesystem ? [1] : []
    content {
      name = "database"
    }
  }

  container_definitions = jsonencode([
    {
      name      = var.container_name
      image     = var.image
      essential = true
      # Container-level hard limit equal to the task's: changes nothing on Fargate and
      # keeps the definition acceptable to tools (and moto) that require it.
      memory                 = var.task_memory
      stopTimeout            = local.stop_timeout_seconds
      readonlyRootFilesystem = var.readonly_root_filesystem
      portMappings = [
        {
          containerPort = var.app_port
          hostPort      = var.app_port
          protocol      = "tcp"
        }
      ]
      environment = [for k, v in local.task_environment : { name = k, value = v }]
      secrets     = [for k, arn in var.app_secrets : { name = k, valueFrom = arn }]
      # The same readiness the agent reports on the lease: the app answers on its port.
      # The start period covers the download and the app's boot.
      healthCheck = {
        command     = ["CMD-SHELL", local.health_check_command]
        interval    = 10
        timeout     = 5
        retries     = 3
        startPeriod = var.health_check_start_period_seconds
      }
      mountPoints = var.readonly_root_filesystem ? [
        {
          sourceVolume  = "database"
          containerPath = local.database_dir
          readOnly      = false
        }
      ] : []
      logConfiguration = {
        logDriver = "awslogs"
        options = {
          awslogs-group         = aws_cloudwatch_log_group.task.name
          awslogs-region        = local.region
          awslogs-stream-prefix = var.container_name
        }
      }
    }
  ])

  lifecycle {
    precondition {
      condition     = !var.readonly_root_filesystem || !contains(["/", "/app"], local.database_dir)
      error_message = "With readonly_root_filesystem, put the database in a directory of its own (db_local_path such as /data/db.sqlite3): that directory becomes an empty task volume."
    }
    precondition {
      condition     = var.stop_grace_seconds < var.stop_budget_seconds
      error_message = "stop_grace_seconds must be smaller than stop_budget_seconds: the final upload happens after the app has stopped."
    }
  }
}
