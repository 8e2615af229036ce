terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(
      {
        Application = var.name
        Stage       = var.stage
        ManagedBy   = "terraform"
      },
      var.tags,
    )
  }
}
