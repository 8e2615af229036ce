# ---------------------------------------------------------------------------
# Naming and placement
# ---------------------------------------------------------------------------

variable "name" {
  description = "Application name; prefixes every resource name. Must match app_name in .chalice/config.json."
  type        = string
  default     = "wakeful"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name))
    error_message = "name must be 2-31 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "stage" {
  description = "Deployment stage. Must equal the --stage given to scripts/package_control_plane.py."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,15}$", var.stage))
    error_message = "stage must be 1-16 lowercase letters and digits, starting with a letter (for example dev or prod)."
  }
}

variable "region" {
  description = "AWS region to deploy into. Null uses the provider's usual sources (AWS_REGION, profile)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Database storage (S3) and lease (DynamoDB)
# ---------------------------------------------------------------------------

variable "bucket_name" {
  description = "S3 bucket for the database. Empty: <name>-<stage>-db-<account id>. To adopt an existing db-sync.sh bucket, give its name and import it (infra/README.md)."
  type        = string
  default     = ""

  validation {
    condition     = var.bucket_name == "" || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, dots, hyphens)."
  }
}

variable "db_key" {
  description = "Object key of the current database (DB_S3_KEY). Backups are written next to it as <key>.backup.YYYYMMDD_HHMMSS."
  type        = string
  default     = "db.sqlite3"

  validation {
    condition     = length(var.db_key) > 0 && !startswith(var.db_key, "/") && !endswith(var.db_key, "/") && !strcontains(var.db_key, "*")
    error_message = "db_key must be an object key such as db.sqlite3 or app/db.sqlite3: not empty, no leading or trailing slash, no '*'."
  }
}

variable "db_local_path" {
  description = "Path of the SQLite file inside the container (DB_LOCAL_PATH)."
  type        = string
  default     = "/app/db.sqlite3"

  validation {
    condition     = startswith(var.db_local_path, "/") && !endswith(var.db_local_path, "/")
    error_message = "db_local_path must be an absolute file path."
  }
}

variable "kms_key_arn" {
  description = "Customer-managed KMS key for the bucket and the lease table. Null: SSE-S3 for the bucket and the AWS-managed key for DynamoDB."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "retention_days" {
  description = "Point-in-time restore window of the chain replication, in days (WAKEFUL_RETENTION, given to the agent in seconds): every committed state this recent restores. Superseded versions are kept at least a day longer (noncurrent_version_expiration_days is raised to it)."
  type        = number
  default     = 7

  validation {
    condition     = var.retention_days >= 1 && floor(var.retention_days) == var.retention_days
    error_message = "retention_days must be a whole number of days, at least 1."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which superseded versions of the database (and of backups, old snapshots, old manifests and removed segments) are deleted; never fewer than retention_days + 1."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "noncurrent_versions_to_keep" {
  description = "Newest superseded versions kept regardless of age, so a restore target always exists."
  type        = number
  default     = 10

  validation {
    condition     = var.noncurrent_versions_to_keep >= 0 && var.noncurrent_versions_to_keep <= 100
    error_message = "noncurrent_versions_to_keep must be between 0 and 100 (the S3 limit)."
  }
}

variable "backup_expiration_days" {
  description = "Days after which <key>.backup.* objects expire. The agent's own count-based retention (backup_retention) usually removes them first."
  type        = number
  default     = 90

  validation {
    condition     = var.backup_expiration_days >= 1
    error_message = "backup_expiration_days must be at least 1."
  }
}

variable "bucket_force_destroy" {
  description = "Allow terraform destroy to delete a bucket that still holds objects. Leave false for real data."
  type        = bool
  default     = false
}

variable "lease_table_name" {
  description = "DynamoDB lease table name. Empty: <name>-<stage>-lease."
  type        = string
  default     = ""

  validation {
    condition     = var.lease_table_name == "" || can(regex("^[a-zA-Z0-9_.-]{3,255}$", var.lease_table_name))
    error_message = "lease_table_name must be 3-255 characters of letters, digits, '_', '.', '-'."
  }
}

variable "lease_name" {
  description = "Lease item key (WAKEFUL_LEASE_NAME). Empty: <bucket>/<key>, the code's own default."
  type        = string
  default     = ""
}

variable "task_ledger_ttl" {
  description = "Let DynamoDB TTL delete the control plane's per-task ledger items (attribute purge_at). The lease item never carries purge_at, so its token is never expired."
  type        = bool
  default     = true
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection on the lease table. The table holds the fencing token, which must outlive every holder."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# The Fargate task
# ---------------------------------------------------------------------------

variable "image" {
  description = "Container image of the app with the wakeful agent as entrypoint (see container/Dockerfile), e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/myapp:1.0."
  type        = string

  validation {
    condition     = length(trimspace(var.image)) > 0 && !strcontains(var.image, " ")
    error_message = "image must be a container image reference."
  }
}

variable "container_name" {
  description = "Name of the app container in the task definition (WAKEFUL_CONTAINER_NAME)."
  type        = string
  default     = "app"

  validation {
    condition     = can(regex("^[a-zA-Z0-9_-]{1,255}$", var.container_name))
    error_message = "container_name must be letters, digits, '_' and '-'."
  }
}

variable "task_cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 256

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.task_cpu)
    error_message = "task_cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "task_memory" {
  description = "Fargate task memory in MiB; must be a valid combination with task_cpu."
  type        = number
  default     = 512

  validation {
    condition     = var.task_memory >= 512 && var.task_memory <= 122880
    error_message = "task_memory must be between 512 and 122880 MiB."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "ephemeral_storage_gib" {
  description = "Fargate ephemeral storage in GiB; holds the database, its snapshot during upload and the app."
  type        = number
  default     = 21

  validation {
    condition     = var.ephemeral_storage_gib >= 21 && var.ephemeral_storage_gib <= 200
    error_message = "ephemeral_storage_gib must be between 21 and 200."
  }
}

variable "app_port" {
  description = "TCP port the app listens on (WAKEFUL_APP_PORT)."
  type        = number
  default     = 8000

  validation {
    condition     = var.app_port >= 1 && var.app_port <= 65535 && floor(var.app_port) == var.app_port
    error_message = "app_port must be an integer port number."
  }
}

variable "app_environment" {
  description = "Extra environment variables for the app. The agent's own variables (DB_S3_*, DB_LOCAL_PATH, WAKEFUL_*) are set by this module and win."
  type        = map(string)
  default     = {}
}

variable "app_secrets" {
  description = "Environment variables filled from Secrets Manager or SSM Parameter Store: name => secret or parameter ARN. The execution role may read exactly these."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for arn in values(var.app_secrets) : can(regex("^arn:aws[a-z-]*:(secretsmanager|ssm):", arn))])
    error_message = "app_secrets values must be Secrets Manager secret or SSM parameter ARNs."
  }
}

variable "readonly_root_filesystem" {
  description = "Run the container with a read-only root filesystem. The database directory stays writable (a task volume is mounted there); enable it when the app writes nowhere else."
  type        = bool
  default     = false
}

variable "sync_interval_seconds" {
  description = "Periodic upload interval while the database changes (WAKEFUL_SYNC_INTERVAL); 0 uploads only at shutdown. The most a crash can lose."
  type        = number
  default     = 60

  validation {
    condition     = var.sync_interval_seconds >= 0
    error_message = "sync_interval_seconds must be >= 0."
  }
}

variable "lease_ttl_seconds" {
  description = "Lease time-to-live (WAKEFUL_LEASE_TTL); the agent renews every third of it."
  type        = number
  default     = 30

  validation {
    condition     = var.lease_ttl_seconds >= 5
    error_message = "lease_ttl_seconds must be at least 5."
  }
}

variable "idle_timeout_seconds" {
  description = "Stop the backend this long after the last wake (WAKEFUL_IDLE_TIMEOUT); 0 never sleeps on its own."
  type        = number
  default     = 900

  validation {
    condition     = var.idle_timeout_seconds >= 0
    error_message = "idle_timeout_seconds must be >= 0."
  }
}

variable "backup_retention" {
  description = "Number of <key>.backup.* objects the agent keeps (WAKEFUL_BACKUP_RETENTION)."
  type        = number
  default     = 30

  validation {
    condition     = var.backup_retention >= 1
    error_message = "backup_retention must be at least 1."
  }
}

variable "stop_grace_seconds" {
  description = "Seconds the app gets after SIGTERM before SIGKILL (WAKEFUL_STOP_GRACE)."
  type        = number
  default     = 10

  validation {
    condition     = var.stop_grace_seconds >= 0 && var.stop_grace_seconds < 100
    error_message = "stop_grace_seconds must be between 0 and 99 so the final upload still fits in the 120 s stop timeout."
  }
}

variable "stop_budget_seconds" {
  description = "Seconds the agent may spend on the final upload and release (WAKEFUL_STOP_BUDGET). Must stay under the 120 s Fargate stopTimeout."
  type        = number
  default     = 100

  validation {
    condition     = var.stop_budget_seconds >= 10 && var.stop_budget_seconds <= 115
    error_message = "stop_budget_seconds must be between 10 and 115: ECS sends SIGKILL 120 s after SIGTERM."
  }
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention for the task and the control plane."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 3653)."
  }
}

variable "container_insights" {
  description = "Enable ECS Container Insights on the cluster."
  type        = bool
  default     = true
}

# ---------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------

variable "vpc_id" {
  description = "VPC of the task's security group."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123abcd."
  }
}

variable "subnet_ids" {
  description = "Subnets the task may run in (WAKEFUL_SUBNETS). They need a route to S3, DynamoDB, ECR and CloudWatch Logs (NAT, public IP, or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0 && alltrue([for s in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", s))])
    error_message = "subnet_ids must be a non-empty list of subnet ids."
  }
}

variable "assign_public_ip" {
  description = "Give the task a public IP (WAKEFUL_ASSIGN_PUBLIC_IP): needed in public subnets without NAT."
  type        = bool
  default     = false
}

variable "app_ingress_cidr_blocks" {
  description = "CIDR blocks allowed to reach the app port (your proxy or load balancer subnets). Empty: no CIDR ingress."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for c in var.app_ingress_cidr_blocks : can(cidrhost(c, 0))])
    error_message = "app_ingress_cidr_blocks must be CIDR blocks."
  }
}

variable "app_ingress_security_group_ids" {
  description = "Security groups allowed to reach the app port (for example a load balancer's)."
  type        = list(string)
  default     = []
}

variable "extra_security_group_ids" {
  description = "Additional security groups attached to the task (WAKEFUL_SECURITY_GROUPS, with the one this module creates)."
  type        = list(string)
  default     = []
}

# ---------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------

variable "enable_api" {
  description = "Create the REST API (from Chalice's Swagger), its stage, API key and usage plan. Off only where API Gateway is unavailable (the local moto test: moto imports OpenAPI 3 only)."
  type        = bool
  default     = true
}

variable "api_throttle_rate_limit" {
  description = "Steady-state requests per second allowed with the API key."
  type        = number
  default     = 10
}

variable "api_throttle_burst_limit" {
  description = "Burst of requests allowed with the API key."
  type        = number
  default     = 20
}

variable "start_timeout_seconds" {
  description = "A reservation that no agent takes within this time is released and its task stopped (WAKEFUL_START_TIMEOUT)."
  type        = number
  default     = 300

  validation {
    condition     = var.start_timeout_seconds >= 30
    error_message = "start_timeout_seconds must be at least 30."
  }
}

variable "task_tags" {
  description = "Extra tags the control plane puts on each task it starts (WAKEFUL_TASK_TAGS); app and stage are always set."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.task_tags : !strcontains(k, ",") && !strcontains(k, "=") && !strcontains(v, ",")])
    error_message = "task_tags keys may not contain ',' or '=', values may not contain ','."
  }
}

variable "control_plane_environment" {
  description = "Extra environment variables for the control plane Lambdas (for example LOG_LEVEL). The variables this module sets win."
  type        = map(string)
  default     = {}
}

# ---------------------------------------------------------------------------
# Alarms and dashboard
# ---------------------------------------------------------------------------

variable "alarm_email" {
  description = "Email address subscribed to the alarm topic (confirm the subscription mail). Empty: no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be an email address or empty."
  }
}

variable "alarm_topic_kms_key_id" {
  description = "KMS key for the alarm SNS topic. Must be a customer-managed key whose policy lets CloudWatch use it (alias/aws/sns does not). Null: unencrypted topic."
  type        = string
  default     = null
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the EMF metrics (POWERTOOLS_METRICS_NAMESPACE for the agent and the Lambdas). Empty: <name>-<stage>, so one stage's alarm never counts another's stops."
  type        = string
  default     = ""
}

variable "health_check_start_period_seconds" {
  description = "Seconds after the task starts before failed container health checks count: long enough to download the database and boot the app. ECS allows 0 to 300."
  type        = number
  default     = 120

  validation {
    condition     = var.health_check_start_period_seconds >= 0 && var.health_check_start_period_seconds <= 300
    error_message = "health_check_start_period_seconds must be between 0 and 300."
  }
}

variable "ready_path" {
  description = "HTTP path the agent probes before the backend counts as running (any answer below 500 passes). Empty: a TCP connect to app_port."
  type        = string
  default     = ""

  validation {
    condition     = var.ready_path == "" || startswith(var.ready_path, "/")
    error_message = "ready_path must be empty or start with /."
  }
}
