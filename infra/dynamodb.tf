# The lease table: one item per database, keyed by the lease name, plus the control plane's
# small per-task ledger items ("<lease>#task#<id>", chalicelib/ledger.py). The lease item has
# no TTL attribute: it carries the fencing token, which must outlive every holder (DESIGN.md
# "The lease"). TTL is only on purge_at, which only ledger items carry.

resource "aws_dynamodb_table" "lease" {
  #checkov:skip=CKV_AWS_119:Encrypted with the AWS-managed key unless kms_key_arn names a customer key; the item holds no secrets.
  name                        = local.table_name
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pk"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pk"
    type = "S"
  }

  dynamic "ttl" {
    for_each = var.task_ledger_ttl ? [1] : []
    content {
      attribute_name = "purge_at"
      enabled        = true
    }
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }
}
