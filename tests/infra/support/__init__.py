"""Test support of the infra tests: a CloudFormation token renderer and a moto Step Functions shim."""
