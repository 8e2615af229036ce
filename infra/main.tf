data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  prefix     = "${var.name}-${var.stage}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  bucket_name = var.bucket_name != "" ? var.bucket_name : "${local.prefix}-db-${local.account_id}"
  table_name  = var.lease_table_name != "" ? var.lease_table_name : "${local.prefix}-lease"
  # The code derives the same default; spelling it out here keeps the control plane and
  # the agent on one lease even if one of them is configured by hand.
  lease_name = var.lease_name != "" ? var.lease_name : "${local.bucket_name}/${var.db_key}"

  metrics_namespace = var.metrics_namespace != "" ? var.metrics_namespace : local.prefix

  bucket_arn = aws_s3_bucket.database.arn
  # The only objects wakeful touches: the current database and its timestamped backups.
  database_object_arn = "${local.bucket_arn}/${var.db_key}"
  backup_objects_arn  = "${local.bucket_arn}/${var.db_key}.backup.*"
}
