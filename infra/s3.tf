# The database bucket: versioned, encrypted, private, TLS-only. Old versions and backups
# expire on a schedule so that the bucket does not grow without bound.

resource "aws_s3_bucket" "database" {
  #checkov:skip=CKV_AWS_18:Access logging needs a second bucket; CloudTrail data events are the audit trail if wanted.
  #checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice left to the operator; versions and backups cover operator error.
  #checkov:skip=CKV_AWS_145:SSE-S3 by default as specified; a customer KMS key is used when kms_key_arn is set.
  #checkov:skip=CKV2_AWS_62:No consumer of S3 event notifications; the control plane verifies uploads with head-object.
  bucket        = local.bucket_name
  force_destroy = var.bucket_force_destroy
}

resource "aws_s3_bucket_versioning" "database" {
  bucket = aws_s3_bucket.database.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "database" {
  bucket = aws_s3_bucket.database.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    # Fewer KMS requests (and cost) for every upload when a KMS key is used.
    bucket_key_enabled = var.kms_key_arn != null
  }
}

resource "aws_s3_bucket_public_access_block" "database" {
  bucket = aws_s3_bucket.database.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "database" {
  bucket = aws_s3_bucket.database.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.database.arn,
      "${aws_s3_bucket.database.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "database" {
  bucket = aws_s3_bucket.database.id
  policy = data.aws_iam_policy_document.bucket.json

  # A policy written before the public access block would be judged by the old settings.
  depends_on = [aws_s3_bucket_public_access_block.database]
}

# The chain's retention (docs/replication.md §9, wakeful_replica/retention.lifecycle_rules):
# the agent deletes old segments while awake; asleep, only these rules act, and none of them
# expires a current object under "<key>.wakeful/" by age (the tail after the newest snapshot
# must survive any sleep). A base a restore point inside the window needs is superseded only
# by a newer snapshot, so keeping superseded versions retention_days + 1 keeps every such base.
locals {
  noncurrent_version_expiration_days = max(var.noncurrent_version_expiration_days, var.retention_days + 1)
}

resource "aws_s3_bucket_lifecycle_configuration" "database" {
  bucket = aws_s3_bucket.database.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days           = local.noncurrent_version_expiration_days
      newer_noncurrent_versions = var.noncurrent_versions_to_keep > 0 ? var.noncurrent_versions_to_keep : null
    }

    # Delete markers left behind by backup and chain retention, once their versions are gone.
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "expire-backups"
    status = "Enabled"

    filter {
      prefix = "${var.db_key}.backup."
    }

    expiration {
      days = var.backup_expiration_days
    }
  }

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    # A killed agent can leave a multipart upload behind; its parts cost storage.
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Noncurrent-version rules mean nothing until versioning is on; S3 may evaluate a
  # configuration as soon as it lands, so versioning goes first.
  depends_on = [aws_s3_bucket_versioning.database]
}
