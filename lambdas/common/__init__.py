"""Adapter code shared by the assertion Lambdas: the run event, S3 evidence, CloudWatch figures, Secrets
Manager DSNs, and the CheckResult ↔ Step Functions payload conversion. Nothing here judges a run: that is
``resgate.checks``; this package only gets the evidence there and the results back out."""
